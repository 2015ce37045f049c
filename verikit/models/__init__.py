"""Embedding models: backbone plugin -> embedding head -> L2-normalised vector."""
