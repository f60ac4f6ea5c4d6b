"""From files to vectors: the models an index uses (models.py) and batch embedding of media folders and
caption files into training memories (`avsearch embed`, pipeline.py)."""
