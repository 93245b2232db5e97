"""How a sealed task reaches an isolated environment: ``local`` or ``kubernetes``."""

from __future__ import annotations

from isolation.backends.base import Backend, LogSink, RunOutcome, Sealer
from isolation.backends.kubernetes import KubernetesBackend
from isolation.backends.local import LocalBackend
from isolation.errors import ConfigurationError

__all__ = ["Backend", "KubernetesBackend", "LocalBackend", "LogSink", "RunOutcome", "Sealer", "get_backend"]

_BY_NAME: dict[str, type[Backend]] = {"kubernetes": KubernetesBackend, "local": LocalBackend}


def get_backend(backend: str | Backend | None) -> Backend:
    """A backend instance from a name (``"local"``, ``"kubernetes"``) or the instance itself.

    None: the ``[isolation] backend`` setting of Airflow's configuration, default ``local``.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        backend = _configured_backend()
    factory = _BY_NAME.get(backend)
    if factory is None:
        raise ConfigurationError(
            f"unknown isolation backend {backend!r}",
            hint=f"use one of {sorted(_BY_NAME)} or pass a Backend instance",
        )
    return factory()


def _configured_backend() -> str:
    try:
        from airflow.configuration import conf

        return str(conf.get("isolation", "backend", fallback="local") or "local")
    except ImportError:  # no Airflow here: the embedded default
        return "local"
