"""The pipeline: `replay` (source files -> decode -> symbology -> validate -> map -> load, one
transaction per file), its executors (`workers`: a local process pool; `cluster`: Dask) and
`run` (fetch from Databento, then the same replay)."""
