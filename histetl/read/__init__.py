"""Reading loaded tables back: `database` (the generic reader over a target's), `query`,
`verify`, `resample` and `calendars` (the trading sessions verify and the quality page use)."""
