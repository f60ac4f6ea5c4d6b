"""The ingest pipeline behind `avsearch index`: scan a folder, diff it against the index, embed what
changed in committed batches, sweep deletions, then bring the FAISS indexes up to date."""
