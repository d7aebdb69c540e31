"""histetl: columnar batch ETL for Databento historical market data."""

__version__ = "0.1.0"
