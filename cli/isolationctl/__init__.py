"""``isolationctl``: the command line of apache-airflow-providers-isolation.

A thin layer over the library: projects and environments (``init``, ``env``,
``deploy``), keys with staged rotation (``keys``), envelope tools (``envelope``) and
health checks (``doctor``). Every command's errors are one line plus the fix, with the
exit codes of :class:`isolationctl._ui.ExitCode` (docs/cli.md).
"""
