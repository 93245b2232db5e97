"""The DAG-parse check of the wrapped operator's arguments, against the host's copy of it.

Used directly, an operator refuses an argument it does not take when the DAG file is
parsed ("Invalid arguments were passed to BashOperator"). Wrapped, it is built only in the
environment, so a typo (``bash_comand=``) would surface when the task runs. When the
host can import the wrapped class, the names are checked here, at parse time, with the
error type Airflow raises (``TypeError``).

The host's copy may be another version than the environment's, so a name is refused only
when the host's constructors provably refuse it (see :mod:`isolation._signature`); a class
whose signatures cannot tell, or that the host cannot import, is left to the environment,
which reports "unknown argument" with its own signature. ``check_arguments=False`` turns
the check off for an argument only the environment's version has.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from isolation import _signature
from isolation.errors import InvalidOperatorArguments

__all__ = ["check_wrapped_arguments"]

# The runtime takes the task's identity from the envelope's header, never from these.
_SET_BY_THE_RUNTIME = frozenset({"task_id", "dag"})


def host_class(operator: Any) -> type | None:
    """The wrapped class as the host has it; None when the host cannot import it."""
    if isinstance(operator, type):
        return operator
    if not isinstance(operator, str):
        return None  # operator_path() refuses it, with its own message
    module_name, _, name = operator.replace(":", ".").rpartition(".")
    # This project's own runtime classes run in the environment only.
    if module_name.startswith("isolation.runtime"):
        return None
    try:
        with warnings.catch_warnings():
            # Airflow 3 answers Airflow 2 spellings with a deprecation warning; the DAG file
            # did not import anything, it named a class for the environment.
            warnings.simplefilter("ignore")
            found = getattr(importlib.import_module(module_name), name)
    except Exception:  # not installed, or not importable here: the environment decides
        return None
    return found if isinstance(found, type) else None


def _version_of(cls: type) -> str:
    """Where the host's class comes from, with its version when the package says."""
    parts = cls.__module__.split(".")
    package = ".".join(parts[:3]) if parts[:2] == ["airflow", "providers"] else parts[0]
    version = getattr(sys.modules.get(package), "__version__", None)
    where = f"{cls.__module__}.{cls.__qualname__}"
    return f"{where}, {package} {version}" if isinstance(version, str) else where


def check_wrapped_arguments(operator: Any, names: Iterable[str], *, task_id: str | None, environment: Any) -> None:
    """Refuse ``names`` the host's copy of ``operator`` does not take (InvalidOperatorArguments)."""
    wanted = [name for name in dict.fromkeys(names) if name not in _SET_BY_THE_RUNTIME]
    if not wanted:
        return
    cls = host_class(operator)
    if cls is None:
        return
    from airflow.sdk import BaseOperator

    unknown = _signature.unknown_arguments(cls, wanted, BaseOperator)
    if not unknown:
        return
    plural = len(unknown) > 1
    where = f"environment {environment!r}" if isinstance(environment, str) else "the environment"
    raise InvalidOperatorArguments(
        f"Invalid arguments were passed to {cls.__name__} (task_id: {task_id}) through IsolatedOperator: "
        f"unknown argument{'s' if plural else ''} {_signature.describe_unknown(unknown, cls, BaseOperator)}. "
        f"Checked at DAG parse time against the host's version of the operator ({_version_of(cls)}); "
        f"if {where} has a version that takes {'them' if plural else 'it'}, pass check_arguments=False "
        "to the IsolatedOperator",
        hint="fix the argument names, or pass check_arguments=False when only the environment's version "
        "of the operator has them",
    )
