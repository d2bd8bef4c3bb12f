"""SQL over the lake: DuckDB embedded (the default) and Athena over the Glue catalog."""
