"""Persistent full-text retrieval over sections (SQLite FTS5 with BM25)."""
