"""How a sealed task reaches an isolated environment: ``local`` or ``kubernetes``."""

from __future__ import annotations

from isolation.backends.base import Backend, LogSink, RunOutcome, Sealer
from isolation.backends.kubernetes import KubernetesBackend
from isolation.backends.local import LocalBackend
from isolation.errors import ConfigurationError

__all__ = ["Backend", "KubernetesBackend", "LocalBackend", "LogSink", "RunOutcome", "Sealer", "get_backend"]

_BY_NAME: dict[str, type[Backend]] = {"kubernetes": KubernetesBackend, "local": LocalBackend}


def get_backend(backend: str | Backend) -> Backend:
    """A backend instance from a name (``"local"``, ``"kubernetes"``) or the instance itself."""
    if isinstance(backend, Backend):
        return backend
    factory = _BY_NAME.get(backend)
    if factory is None:
        raise ConfigurationError(
            f"unknown isolation backend {backend!r}",
            hint=f"use one of {sorted(_BY_NAME)} or pass a Backend instance",
        )
    return factory()
