"""Example DAGs (tested documentation) and the callables they run in isolated environments."""
