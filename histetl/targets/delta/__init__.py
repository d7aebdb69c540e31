"""Delta Lake (`delta:///path/to/lake`, `delta+s3://bucket/prefix`): `sink` loads (one commit
per file with its ledger record), keeping what a load holds on disk (`spill`); `ledger` reads
the records back from the commits; `read` reads back through an in-memory DuckDB; `lake`
maintains the tables."""
