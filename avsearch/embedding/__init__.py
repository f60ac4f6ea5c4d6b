"""Batch embedding of media folders and caption files into training memories (`avsearch embed`)."""

from avsearch.embedding.pipeline import EmbedReport, embed_sources
from avsearch.embedding.walk import collect_files

__all__ = ["EmbedReport", "collect_files", "embed_sources"]
