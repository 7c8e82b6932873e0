"""ChromaDB helpers for receipt embeddings."""
