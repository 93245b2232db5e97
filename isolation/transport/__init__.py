"""Sealed state transport: envelope v1, keysets and the payload schema.

The safe recipe is three calls::

    text = seal_envelope(payload, signer=host_signer, recipient=env_public)
    opened = open_envelope(text, signers=host_public, recipient=env_private)
    opened.payload

This package never imports Airflow. The payload models (pydantic) load lazily so
that importing the package stays cheap for the isolated runtime's fast paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from isolation.errors import EnvelopeRejected, KeysetError, PayloadError, RejectReason, RotationError
from isolation.transport._codec import CallableRef
from isolation.transport._header import Header, Subject
from isolation.transport.envelope import DEFAULT_LIFETIME, ENV_VAR_LIMIT, FILE_LIMIT
from isolation.transport.keyset import Algorithm, Key, Keyset, KeyStatus, Purpose
from isolation.transport.sealed import OpenedEnvelope, inspect_envelope, open_envelope, seal_envelope, verify_envelope

if TYPE_CHECKING:
    from isolation.transport.payload import (
        ConnectionSpec,
        OperatorSpec,
        Payload,
        RuntimeOptions,
        TaskContext,
        XComInput,
    )

__all__ = [
    "DEFAULT_LIFETIME",
    "ENV_VAR_LIMIT",
    "FILE_LIMIT",
    "Algorithm",
    "CallableRef",
    "ConnectionSpec",
    "EnvelopeRejected",
    "Header",
    "Key",
    "KeyStatus",
    "Keyset",
    "KeysetError",
    "OpenedEnvelope",
    "OperatorSpec",
    "Payload",
    "PayloadError",
    "Purpose",
    "RejectReason",
    "RotationError",
    "RuntimeOptions",
    "Subject",
    "TaskContext",
    "XComInput",
    "inspect_envelope",
    "open_envelope",
    "seal_envelope",
    "verify_envelope",
]

_LAZY = {"ConnectionSpec", "OperatorSpec", "Payload", "RuntimeOptions", "TaskContext", "XComInput"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from isolation.transport import payload

        return getattr(payload, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
