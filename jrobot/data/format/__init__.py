"""The on-disk format of LeRobot datasets, and loading a dataset's metadata from it.

Everything that knows file names, column types or JSON keys lives here, so writer, reader, editor and
validator share one definition: paths and size constants (`layout`), info.json (`info`), the data
parquet's arrow types (`arrow_schema`, `parquet_io`, `images`), statistics (`stats`, `stats_check`),
tasks and episodes parquet (`meta_io`), and the metadata loaders: `meta` (the normalised
`DatasetMeta` types), `v3_meta` (v3.0), `legacy` (v2.0/v2.1 jsonl) and `load.load_meta` above both.
"""
