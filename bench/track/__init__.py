"""Recording and reading results: MLflow runs, the summary table, bench compare, bench ui."""
