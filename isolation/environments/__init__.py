"""Isolated environments: their definitions (``environments/<name>/``) and local builds."""

from __future__ import annotations

from isolation.environments.local import LocalEnvironment, build_local, find_local
from isolation.environments.spec import EnvironmentSpec, load_spec

__all__ = ["EnvironmentSpec", "LocalEnvironment", "build_local", "find_local", "load_spec"]
