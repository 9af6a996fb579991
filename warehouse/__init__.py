"""Raw benchmark logs -> validated Parquet perf tables + DuckDB views."""
