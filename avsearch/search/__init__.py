"""Queries over an index: plan the route (native space or the bridge's shared space), embed the query,
search FAISS (or exactly when the index is stale), and return typed results."""
