"""The data-quality report: figures accumulated while batches stream, rendered as one HTML page.

`figures` holds the per-batch accumulators (small aggregates, bounded memory), `observer` the
pipeline observer that feeds them, `series` the per-instrument figures (holes, jumps, sequence)
in numpy, `aggregates` the numpy group-by sums and latency histogram, `results` the figures as
the page's dict; `page` renders that as a self-contained HTML page (cell text from `htmlfmt`),
with inline SVG drawn by `charts` (hand-written, no plotting library); `build` ties them to a
run (and, for `histetl report`, to a run report and its target) and writes the page and its
JSON sidecar.
"""
