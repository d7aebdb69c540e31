"""PostgreSQL and TimescaleDB (`postgresql://...` or a key=value DSN), through ADBC: `conn`
(URI, timeouts, errors), `schema` (the table layout and DDL), `sink` and `load` (loading),
`read` (reading back), `probe` (the ledger pre-check)."""
