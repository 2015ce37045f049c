"""Vector indexes and the gallery of enrolled identities that owns them."""
