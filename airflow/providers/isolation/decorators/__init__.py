"""Re-export only: the ``@task.isolated`` decorator (``isolation.operators.taskflow``)."""
