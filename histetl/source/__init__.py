"""The source stage: where DBN files come from (local paths; the Historical API in `fetch`)."""
