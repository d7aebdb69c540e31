"""The data-quality report: figures accumulated while batches stream, rendered as one HTML page.

`figures` holds the per-batch accumulators (small aggregates, bounded memory) and the pipeline
observer that feeds them; `page` renders the figures as a self-contained HTML page with inline
SVG charts (matplotlib, imported only when a page is written) and writes the JSON sidecar;
`build` ties both to a run (and, for `histetl report`, to a run report and its target).
"""
