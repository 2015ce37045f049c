"""enroll, verify and search: the glue between image files, the embedder and the gallery."""
