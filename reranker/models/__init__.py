"""The relevance models: teacher cross-encoder, BERM student, BERM-O online model (one file each)."""
