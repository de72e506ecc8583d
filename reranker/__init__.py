"""Models (teacher, BERM, BERM-O), the click-graph neighbor lookup, training, and the gRPC server."""
