"""Where the envelope and the keys come from, and opening the envelope.

The envelope's environment variables are removed from ``os.environ`` as soon as the
text has been read, so no child process the operator starts can inherit them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from isolation.errors import ConfigurationError, IsolationError
from isolation.keyring import DEFAULT_KEYS_DIR, EnvironmentKeys
from isolation.transport import ENV_VAR_LIMIT, FILE_LIMIT, OpenedEnvelope, Subject, open_envelope

ENVELOPE_VAR = "ISOLATION_ENVELOPE"
ENVELOPE_FILE_VAR = "ISOLATION_ENVELOPE_FILE"
KEYS_DIR_VAR = "ISOLATION_KEYS_DIR"
# Set by the Kubernetes backend: the keys directory is the keys Secret's read-only volume.
KEYS_SECRET_VOLUME_VAR = "ISOLATION_KEYS_SECRET_VOLUME"  # noqa: S105 - a variable name
RESULT_PATH_VAR = "ISOLATION_RESULT_PATH"
EXPECTED_SUBJECT_VAR = "ISOLATION_EXPECTED_SUBJECT"
DEFAULT_ENVELOPE_FILE = "/var/run/isolation/envelope/envelope"
DEFAULT_RESULT_PATH = "/airflow/xcom/return.json"


@dataclass(frozen=True)
class EnvelopeText:
    """Envelope text as read, with the size limit of the transport it came by."""

    data: bytes
    limit: int
    origin: str


def _bounded_read(stream: BinaryIO, limit: int) -> bytes:
    # One byte over the limit is enough to reject; never read an unbounded stream.
    return stream.read(limit + 1)


def read_envelope(
    *,
    use_stdin: bool = False,
    envelope_file: str | None = None,
    environ: MutableMapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
) -> EnvelopeText:
    """Read the envelope text; flags win over environment variables (docs/runtime.md)."""
    env = os.environ if environ is None else environ
    inline = env.pop(ENVELOPE_VAR, None)
    file_from_env = env.pop(ENVELOPE_FILE_VAR, None)
    if envelope_file is None and not use_stdin and inline is not None:
        encoded = inline.encode("utf-8", "surrogateescape")
        return _checked(encoded[: ENV_VAR_LIMIT + 1], ENV_VAR_LIMIT, f"${ENVELOPE_VAR}")
    if use_stdin and envelope_file is None:
        stream = stdin if stdin is not None else sys.stdin.buffer
        return _checked(_bounded_read(stream, FILE_LIMIT), FILE_LIMIT, "standard input")
    path = Path(envelope_file or file_from_env or DEFAULT_ENVELOPE_FILE)
    try:
        with path.open("rb") as handle:
            data = _bounded_read(handle, FILE_LIMIT)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no envelope: {path} does not exist",
            hint=f"pass the envelope in ${ENVELOPE_VAR}, in a file (${ENVELOPE_FILE_VAR}, --envelope-file) "
            "or on standard input with --stdin",
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the envelope file {path}: {exc.strerror}", hint="check the mount and its permissions"
        ) from None
    return _checked(data, FILE_LIMIT, str(path))


def _checked(data: bytes, limit: int, origin: str) -> EnvelopeText:
    # A trailing newline is framing added by editors and `echo`, not envelope text.
    data = data.rstrip(b"\r\n")
    if not data:
        raise ConfigurationError(
            f"no envelope: {origin} is empty", hint="check that the host sealed and passed the envelope"
        )
    return EnvelopeText(data, limit, origin)


def load_keys(keys_dir: str | None, environ: MutableMapping[str, str] | None = None) -> EnvironmentKeys:
    env = os.environ if environ is None else environ
    directory = keys_dir or env.get(KEYS_DIR_VAR) or DEFAULT_KEYS_DIR
    try:
        return EnvironmentKeys.load(directory, secret_volume=env.get(KEYS_SECRET_VOLUME_VAR) == "1")
    except IsolationError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read the keys directory {directory}: {type(exc).__name__}",
            hint=f"mount the environment's keys there or set ${KEYS_DIR_VAR}",
        ) from None


def expected_subject(environ: MutableMapping[str, str] | None = None) -> Subject | None:
    env = os.environ if environ is None else environ
    raw = env.get(EXPECTED_SUBJECT_VAR)
    if not raw:
        return None
    try:
        dag_id, task_id, run_id, map_index, try_number = json.loads(raw)
        subject = Subject(dag_id, task_id, run_id, map_index, try_number)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"${EXPECTED_SUBJECT_VAR} must be a JSON array [dag_id, task_id, run_id, map_index, try_number]"
        ) from None
    if not all(isinstance(v, str) for v in subject.as_list()[:3]) or not all(
        type(v) is int for v in subject.as_list()[3:]
    ):
        raise ConfigurationError(f"${EXPECTED_SUBJECT_VAR} has fields of the wrong type")
    return subject


def open_text(text: EnvelopeText, keys: EnvironmentKeys, subject: Subject | None) -> OpenedEnvelope:
    """Verify, check time/audience/subject, decrypt and validate. Raises EnvelopeRejected."""
    return open_envelope(
        text.data, signers=keys.signers, recipient=keys.recipient, subject=subject, max_text_size=text.limit
    )


def result_path(
    from_payload: str | None,
    flag: str | None,
    *,
    opened: bool,
    environ: MutableMapping[str, str] | None = None,
) -> str | None:
    """Where to write the result: the host's choice, then the flag, the variable, the default.

    Before the envelope is open there is no host choice; the default path is then used
    only if its directory exists (it does in a pod with KubernetesPodOperator's sidecar),
    so a rejected envelope never makes the runtime create directories on a machine.
    """
    env = os.environ if environ is None else environ
    chosen = from_payload or flag or env.get(RESULT_PATH_VAR)
    if chosen:
        return chosen
    if not opened and not Path(DEFAULT_RESULT_PATH).parent.is_dir():
        return None
    return DEFAULT_RESULT_PATH
