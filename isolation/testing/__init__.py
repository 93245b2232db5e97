"""Tools for testing an isolation deployment from the outside.

:mod:`isolation.testing.breakout` holds breakout probes: plain functions that each try
one escape from an isolated task and report whether it failed. Run them as the callable
of an isolated ``PythonOperator`` against your own environments.
"""
