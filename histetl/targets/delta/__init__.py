"""Delta Lake (`delta:///path/to/lake`, `delta+s3://bucket/prefix`): `sink` loads (one commit
per file with its ledger record), `read` reads back through an in-memory DuckDB."""
