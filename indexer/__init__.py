"""Data in: catalog readers, bulk indexing into Elasticsearch, query splits."""
