"""The Parquet lake: atomic writes, partitions, logs, DuckDB views; object storage; table schemas."""
