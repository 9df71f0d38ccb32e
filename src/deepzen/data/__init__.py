"""Data: in-memory array batching, readers for the real datasets, text vocabularies."""
