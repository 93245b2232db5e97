"""The warm server's wire format: length-prefixed JSON messages, descriptors by SCM_RIGHTS.

Shared by the host (``isolation.backends._warm``) and the server; imports nothing of
Airflow. A message is a 4-byte big-endian length and that many bytes of a JSON object.
Descriptors travel with the first byte of a message (``socket.send_fds``). Nothing
secret ever crosses this socket: the envelope goes from the host to the task's child
through a pipe whose read end is one of the descriptors, and the server never reads it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

MAX_MESSAGE = 1 << 20
MAX_FDS = 16
_HEADER = struct.Struct(">I")

# Requests (host -> server) and replies (server -> host).
RUN = "run"
SIGNAL = "signal"
STATUS = "status"
DRAIN = "drain"
STARTED = "started"
EXIT = "exit"
ERROR = "error"

# The descriptor numbers a task's child sees (its first descriptors, in this order).
CHILD_STDIN = 0
CHILD_OUTPUT = 1  # also 2: standard output and error are one pipe, as on the cold path
CHILD_LIFELINE = 3
CHILD_RESULT = 4


class ProtocolError(Exception):
    """The peer sent something that is not a message of this protocol, or hung up."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"a message of {len(body)} bytes is larger than {MAX_MESSAGE}")
    return _HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    data = encode(message)
    if fds:
        sent = socket.send_fds(sock, [data[:1]], list(fds))
        if sent != 1:
            raise ProtocolError("the descriptors could not be sent")
        data = data[1:]
    sock.sendall(data)


def _read_exact(sock: socket.socket, count: int, into: bytearray, fds: list[int]) -> None:
    while len(into) < count:
        if not fds and not into:
            chunk, received, _, _ = socket.recv_fds(sock, count - len(into), MAX_FDS)
            fds.extend(received)
        else:
            chunk = sock.recv(count - len(into))
        if not chunk:
            raise ProtocolError("the peer closed the connection")
        into += chunk


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One message and the descriptors that came with it (the caller owns them)."""
    fds: list[int] = []
    header = bytearray()
    try:
        _read_exact(sock, _HEADER.size, header, fds)
        (size,) = _HEADER.unpack(header)
        if size > MAX_MESSAGE:
            raise ProtocolError(f"a message of {size} bytes is larger than {MAX_MESSAGE}")
        body = bytearray()
        _read_exact(sock, size, body, fds)
        message = json.loads(body)
    except (ProtocolError, OSError, ValueError) as exc:
        for fd in fds:
            _close(fd)
        if isinstance(exc, (ProtocolError, TimeoutError)):
            raise
        raise ProtocolError(f"not a message of the warm protocol ({type(exc).__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        for fd in fds:
            _close(fd)
        raise ProtocolError("a message without an operation")
    return message, fds


def _close(fd: int) -> None:
    import os

    with contextlib.suppress(OSError):
        os.close(fd)
