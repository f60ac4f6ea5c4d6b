"""The index store: LanceDB tables (source of truth), a JSON manifest, and FAISS indexes over them.

Layout of an index folder:
    manifest.json              bridges, encoders and their fingerprints, schema version (manifest.py)
    tables/<modality>.lance    one row per file: bookkeeping, native vector, one projected vector per
                               bridge covering the modality's space ("proj_<bridge name>") (tables.py)
    ann/<modality>.<column>.json + -<build>.faiss + -<build>.paths.arrow
                               FAISS index per vector column, its parameters, row -> path (ann_files.py)
"""


def _without_rest_client() -> None:
    """Import lancedb's namespace models without the REST client's package __init__ (its nine API
    modules, about 60% of `import lancedb`), which local and object-store tables never use; the package
    runs its own __init__ if anything asks it for another name (encoders/upstream.py `submodule`)."""
    import contextlib

    from avsearch.encoders.upstream import submodule

    with contextlib.suppress(ImportError):  # another lancedb that does without it: nothing to skip
        submodule("lance_namespace_urllib3_client", "models")


_without_rest_client()
