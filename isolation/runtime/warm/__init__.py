"""Warm environments: a pre-loaded runtime that forks each task into namespaces of its own.

``server`` (``python -m isolation.runtime --serve``) imports Airflow once and forks per
task; ``child`` turns a fork into a sandbox of its own before the envelope is opened;
``protocol`` is the socket's wire format, shared with the host
(``isolation.backends._warm``). See docs/sandbox.md, section 12.
"""
