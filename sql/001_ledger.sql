-- histetl migration 001: the load ledger.
-- One row per (input file, target table) loaded; written in the same transaction as the rows,
-- so a file is either loaded and in the ledger, or neither.
CREATE TABLE IF NOT EXISTS histetl_ledger (
    sha256       text        NOT NULL,
    target_table text        NOT NULL,
    path         text        NOT NULL,
    dataset      text        NOT NULL,
    schema       text        NOT NULL,
    records      bigint      NOT NULL,
    loaded       bigint      NOT NULL,
    duplicates   bigint      NOT NULL,
    quarantined  bigint      NOT NULL,
    run_id       text        NOT NULL,
    loaded_at    timestamptz NOT NULL,
    PRIMARY KEY (sha256, target_table)
);
CREATE INDEX IF NOT EXISTS histetl_ledger_loaded_at ON histetl_ledger (loaded_at);
