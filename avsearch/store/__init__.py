"""The index store: LanceDB tables (source of truth), a JSON manifest, and FAISS indexes over them.

Layout of an index folder:
    manifest.json              bridges, encoders and their fingerprints, schema version (manifest.py)
    tables/<modality>.lance    one row per file: bookkeeping, native vector, one projected vector per
                               bridge covering the modality's space ("proj_<bridge name>") (tables.py;
                               read with the `lance` dataset API, written with LanceDB: lance_read.py)
    ann/<modality>.<column>.json + -<build>.faiss + -<build>.paths.arrow
                               FAISS index per vector column, its parameters, row -> path (ann_files.py);
                               re-ranked kinds without vectors in the FAISS file: + -<id>.vectors.f32,
                               and a guided build's route shift: + -<build>.shift.npy

Modules by job: tables.py (MediaStore) with table_schema / table_rows / table_reads / table_writes /
table_errors; index.py (Index) with index_setup / index_info; ann.py (kinds, choice) with ann_build /
ann_train / ann_tune / ann_search, the query-guided kind (ann_spill), the streamed builds and updates
(ann_stream, ann_update, ann_disk).
"""
