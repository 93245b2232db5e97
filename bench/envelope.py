"""Benchmark envelope v1 against its own primitives and against peer token formats.

Run from the repository root::

    .venv/bin/python bench/envelope.py            # full run, prints tables
    .venv/bin/python bench/envelope.py --quick    # CI smoke run, a few seconds
    .venv/bin/python bench/envelope.py --json     # one JSON object on stdout
    .venv/bin/python bench/envelope.py --json-file out.json   # tables, and the JSON to a file

What is measured, at 1 KiB, 4 KiB, 16 KiB and 1 MiB of the same random plaintext:

* ``envelope``: ``isolation.transport.envelope.seal_bytes`` / ``open_bytes`` (binary).
* ``envelope+text``: the same plus the canonical base64url text encoding.
* ``recipe``: ``seal_envelope`` / ``open_envelope`` with a ``Payload`` whose operator
  kwarg ``data`` carries the plaintext as bytes (pydantic + msgpack codec + text).
* ``bare``: what the envelope is built from, with keys loaded once: HPKE
  (X25519, HKDF-SHA256, AES-256-GCM) encrypt + Ed25519 sign over the HPKE output,
  and Ed25519 verify + HPKE decrypt. ``hpke`` and ``ed25519`` show the two halves.
* ``aes-256-gcm``: raw ``AESGCM`` encrypt/decrypt, the throughput ceiling.
* peers: ``fernet`` (what Airflow encrypts its secrets with), ``jwe`` (joserfc,
  ``alg=ECDH-ES`` ``enc=A256GCM``, X25519 OKP key, compact), ``paseto`` (pyseto
  ``v4.public``: a signature only, no encryption).

Timing (``bench/_timing.py``): all contenders of a size share interleaved rounds; per
operation and round one first call and two warm calls, each timed alone with
``time.perf_counter_ns``; tables use the warm calls' median and p90.

Headline figures: ``overhead_ratio_4k`` = (envelope seal + open) / (bare seal + open)
at 4 KiB, ``throughput_ratio_1m`` = envelope MiB/s / raw AES-256-GCM MiB/s for
seal + open at 1 MiB, next to it ``bare_throughput_ratio_1m`` (bare MiB/s / AES-GCM
MiB/s: the ceiling any envelope signing its ciphertext with Ed25519 can reach) and
``envelope_vs_bare_1m`` (envelope MiB/s / bare MiB/s: what the envelope itself costs at
1 MiB), and ``import_ms`` for ``import isolation.transport`` in a fresh interpreter
next to ``import_floor_ms`` for the modules it cannot avoid. Targets are printed as
met or MISSED; the exit status stays 0 either way. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cryptography
from _timing import Budget, Measurement, Stats, import_times_ms, measure, timer_floor_ns
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from isolation.transport import Keyset, Subject, envelope, open_envelope, seal_envelope

REPO = Path(__file__).resolve().parent.parent

KIB = 1024
MIB = 1024 * KIB
SIZES = (1 * KIB, 4 * KIB, 16 * KIB, 1 * MIB)
RATIO_SIZE = 4 * KIB
THROUGHPUT_SIZE = 1 * MIB

TARGET_OVERHEAD_4K = 1.15
TARGET_THROUGHPUT_1M = 0.5
TARGET_IMPORT_MS = 100.0

TRANSPORT_IMPORT = "import isolation.transport"
FLOOR_IMPORT = "import cryptography.hazmat.primitives.hpke, cryptography.hazmat.primitives.asymmetric.ed25519, msgpack"

FULL = Budget(warmup=10, calls=2, min_rounds=30, max_rounds=20_000, seconds=10.0)
QUICK = Budget(warmup=2, calls=2, min_rounds=5, max_rounds=200, seconds=0.4)
FULL_IMPORT_RUNS = 7
QUICK_IMPORT_RUNS = 3

PEERS = ("fernet", "jwe", "paseto")

Op = Callable[[], object]


# -- fixtures ------------------------------------------------------------------------


class Fixtures:
    """Every key and object the contenders need, created and loaded once."""

    def __init__(self) -> None:
        self.signer = Keyset.generate_signer("bench-host")
        self.signers = self.signer.public()
        self.recipient = Keyset.generate_recipient("bench-env")
        self.recipient_public = self.recipient.public()
        self.subject = Subject("bench_dag", "bench_task", "manual__2026-01-01T00:00:00+00:00")
        # Load the keysets' cryptography objects now, not in the first timed call.
        self.signer.primary().private_key()
        self.signers.primary().public_key()
        self.recipient.primary().private_key()
        self.recipient_public.primary().public_key()

        self.suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
        self.x_private = x25519.X25519PrivateKey.generate()
        self.x_public = self.x_private.public_key()
        self.ed_private = ed25519.Ed25519PrivateKey.generate()
        self.ed_public = self.ed_private.public_key()
        # The bare contender uses HPKE info of the same length as a real envelope's.
        self.info = self._envelope_info()

        self.aesgcm = AESGCM(AESGCM.generate_key(bit_length=256))
        self.fernet = Fernet(Fernet.generate_key())

        # Peers are optional: without their library the table says so instead of crashing.
        self.missing: dict[str, str] = {}
        self.jwe_private: Any = None
        self.jwe_public: Any = None
        self.paseto_sign: Any = None
        self.paseto_verify: Any = None
        try:
            from joserfc.jwk import OKPKey

            self.jwe_private = OKPKey.generate_key("X25519")
            self.jwe_public = OKPKey.import_key(self.jwe_private.as_dict(private=False))
        except ImportError as exc:
            self.missing["jwe"] = f"joserfc is not installed ({exc.name})"
        try:
            import pyseto

            paseto_private = ed25519.Ed25519PrivateKey.generate()
            self.paseto_sign = pyseto.Key.new(
                version=4,
                purpose="public",
                key=paseto_private.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            self.paseto_verify = pyseto.Key.new(
                version=4,
                purpose="public",
                key=paseto_private.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
            )
        except ImportError as exc:
            self.missing["paseto"] = f"pyseto is not installed ({exc.name})"

    def require(self, peer: str) -> None:
        if peer in self.missing:
            raise RuntimeError(self.missing[peer])

    def _envelope_info(self) -> bytes:
        # Wire layout (docs/envelope.md): PREFIX, u16 header length, header, ...
        sealed = self.seal(b"")
        start = len(envelope.PREFIX) + 2
        length = int.from_bytes(sealed[len(envelope.PREFIX) : start], "big")
        return envelope.hpke_info(sealed[start : start + length])

    def seal(self, plaintext: bytes) -> bytes:
        return envelope.seal_bytes(plaintext, signer=self.signer, recipient=self.recipient_public, subject=self.subject)

    def open(self, sealed: bytes) -> bytes:
        return envelope.open_bytes(sealed, signers=self.signers, recipient=self.recipient).plaintext


# -- contenders ------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    sides: tuple[str, str]
    """What the seal-side and open-side operations are called for this contender."""
    build: Callable[[Fixtures, bytes], tuple[Op, Op, str]]
    """Return (seal op, open op, note) for one plaintext, after checking a round trip."""
    kind: str
    """``envelope``, ``reference`` or ``peer``."""


def _check(name: str, got: bytes, want: bytes) -> None:
    if got != want:
        raise RuntimeError(f"{name}: round trip returned different bytes")


def _envelope(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    sealed = fx.seal(data)
    _check("envelope", fx.open(sealed), data)
    return (lambda: fx.seal(data)), (lambda: fx.open(sealed)), f"{len(sealed)} B binary"


def _envelope_text(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    text = envelope.to_text(fx.seal(data))
    limit = max(envelope.FILE_LIMIT, len(text))
    _check("envelope+text", fx.open(envelope.from_text(text, max_size=limit)), data)
    note = f"{len(text)} chars" + (" (> FILE_LIMIT)" if len(text) > envelope.FILE_LIMIT else "")

    def seal() -> str:
        return envelope.to_text(fx.seal(data))

    def open_() -> bytes:
        return fx.open(envelope.from_text(text, max_size=limit))

    return seal, open_, note


def _recipe(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    from isolation.transport import OperatorSpec, Payload, TaskContext

    payload = Payload(
        operator=OperatorSpec(import_path="bench.operators.EchoOperator", kwargs={"data": data}),
        context=TaskContext(dag_id=fx.subject.dag_id, task_id=fx.subject.task_id, run_id=fx.subject.run_id),
    )
    # Probe the text size once to lift the transport limit for sizes beyond it.
    text = seal_envelope(payload, signer=fx.signer, recipient=fx.recipient_public, max_text_size=sys.maxsize)
    limit = max(envelope.FILE_LIMIT, len(text))
    opened = open_envelope(text, signers=fx.signers, recipient=fx.recipient, max_text_size=limit)
    _check("recipe", opened.payload.operator.kwargs["data"], data)
    note = f"{len(text)} chars" + (" (> FILE_LIMIT, limit lifted)" if len(text) > envelope.FILE_LIMIT else "")

    def seal() -> str:
        return seal_envelope(payload, signer=fx.signer, recipient=fx.recipient_public, max_text_size=limit)

    def open_() -> object:
        return open_envelope(text, signers=fx.signers, recipient=fx.recipient, max_text_size=limit)

    return seal, open_, note


def _bare(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    suite, info = fx.suite, fx.info
    x_public, x_private, ed_private, ed_public = fx.x_public, fx.x_private, fx.ed_private, fx.ed_public

    def seal() -> tuple[bytes, bytes]:
        output = suite.encrypt(data, x_public, info=info)
        return output, ed_private.sign(output)

    def open_() -> bytes:
        ed_public.verify(signature, sealed)
        return suite.decrypt(sealed, x_private, info=info)

    sealed, signature = seal()
    _check("bare", open_(), data)
    return seal, open_, "HPKE + Ed25519 over its output"


def _hpke(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    suite, info, x_public, x_private = fx.suite, fx.info, fx.x_public, fx.x_private
    sealed = suite.encrypt(data, x_public, info=info)
    _check("hpke", suite.decrypt(sealed, x_private, info=info), data)
    return (lambda: suite.encrypt(data, x_public, info=info)), (lambda: suite.decrypt(sealed, x_private, info=info)), ""


def _ed25519(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    message = fx.suite.encrypt(data, fx.x_public, info=fx.info)
    ed_private, ed_public = fx.ed_private, fx.ed_public
    signature = ed_private.sign(message)
    ed_public.verify(signature, message)
    return (lambda: ed_private.sign(message)), (lambda: ed_public.verify(signature, message)), "over HPKE output"


def _aesgcm(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    aead = fx.aesgcm
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, data, None)
    _check("aes-256-gcm", aead.decrypt(nonce, sealed, None), data)
    return (lambda: aead.encrypt(os.urandom(12), data, None)), (lambda: aead.decrypt(nonce, sealed, None)), ""


def _fernet(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    fernet = fx.fernet
    token = fernet.encrypt(data)
    _check("fernet", fernet.decrypt(token), data)
    note = f"{len(token)} chars, symmetric, no signature"
    return (lambda: fernet.encrypt(data)), (lambda: fernet.decrypt(token)), note


_JWE_HEADER = {"alg": "ECDH-ES", "enc": "A256GCM"}


def _jwe(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    fx.require("jwe")
    from joserfc import jwe

    # joserfc refuses ciphertexts over 64 KiB by default (as the envelope refuses text
    # over FILE_LIMIT); lift the limit so that 1 MiB can be compared, and say so.
    registry = jwe.JWERegistry()
    lifted = len(data) > registry.max_ciphertext_length
    if lifted:
        registry.max_ciphertext_length = 2 * len(data)
    public, private = fx.jwe_public, fx.jwe_private
    token = jwe.encrypt_compact(_JWE_HEADER, data, public, registry=registry)
    _check("jwe", jwe.decrypt_compact(token, private, registry=registry).plaintext or b"", data)
    note = f"{len(token)} chars, no signature" + (" (64 KiB default limit lifted)" if lifted else "")
    return (
        (lambda: jwe.encrypt_compact(_JWE_HEADER, data, public, registry=registry)),
        (lambda: jwe.decrypt_compact(token, private, registry=registry)),
        note,
    )


def _paseto(fx: Fixtures, data: bytes) -> tuple[Op, Op, str]:
    fx.require("paseto")
    import pyseto

    sign, verify = fx.paseto_sign, fx.paseto_verify
    token = pyseto.encode(sign, data)
    payload = pyseto.decode(verify, token).payload
    _check("paseto", payload if isinstance(payload, bytes) else b"", data)
    note = f"{len(token)} chars, signs only, no encryption"
    return (lambda: pyseto.encode(sign, data)), (lambda: pyseto.decode(verify, token)), note


CONTENDERS = (
    Contender("envelope", ("seal", "open"), _envelope, "envelope"),
    Contender("envelope+text", ("seal", "open"), _envelope_text, "envelope"),
    Contender("recipe", ("seal", "open"), _recipe, "envelope"),
    Contender("bare", ("seal", "open"), _bare, "reference"),
    Contender("hpke", ("encrypt", "decrypt"), _hpke, "reference"),
    Contender("ed25519", ("sign", "verify"), _ed25519, "reference"),
    Contender("aes-256-gcm", ("encrypt", "decrypt"), _aesgcm, "reference"),
    Contender("fernet", ("encrypt", "decrypt"), _fernet, "peer"),
    Contender("jwe", ("encrypt", "decrypt"), _jwe, "peer"),
    Contender("paseto", ("sign", "verify"), _paseto, "peer"),
)


# -- measuring -----------------------------------------------------------------------


@dataclass
class Row:
    name: str
    kind: str
    sides: tuple[str, str]
    note: str = ""
    error: str | None = None
    seal: Stats | None = None
    open: Stats | None = None
    seal_first: Stats | None = None
    open_first: Stats | None = None

    @property
    def total_ns(self) -> float | None:
        """Warm round trip: seal median + open median."""
        if self.seal is None or self.open is None:
            return None
        return self.seal.median_ns + self.open.median_ns

    @property
    def first_total_ns(self) -> float | None:
        """First-call round trip: seal median + open median of the first call in each round."""
        if self.seal_first is None or self.open_first is None:
            return None
        return self.seal_first.median_ns + self.open_first.median_ns

    def mib_s(self, size: int) -> float | None:
        total = self.total_ns
        return None if not total else (size / MIB) / (total / 1e9)

    def to_json(self, size: int) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "ops": list(self.sides), "note": self.note}
        if self.error is not None:
            data["error"] = self.error
            return data
        assert self.seal is not None and self.open is not None
        assert self.seal_first is not None and self.open_first is not None
        total, first_total, mib_s = self.total_ns, self.first_total_ns, self.mib_s(size)
        data.update(
            seal=self.seal.to_json(),
            open=self.open.to_json(),
            round_trip_us=None if total is None else round(total / 1000, 3),
            mib_s=None if mib_s is None else round(mib_s, 2),
            first_call={
                "seal": self.seal_first.to_json(),
                "open": self.open_first.to_json(),
                "round_trip_us": None if first_total is None else round(first_total / 1000, 3),
            },
        )
        return data


@dataclass
class SizeResult:
    size: int
    rounds: int
    rows: dict[str, Row] = field(default_factory=dict)

    def total(self, name: str) -> float | None:
        row = self.rows.get(name)
        return None if row is None else row.total_ns

    def first_total(self, name: str) -> float | None:
        row = self.rows.get(name)
        return None if row is None else row.first_total_ns


def measure_size(fx: Fixtures, size: int, data: bytes, budget: Budget) -> SizeResult:
    ops: dict[str, Op] = {}
    rows: dict[str, Row] = {}
    for contender in CONTENDERS:
        row = Row(contender.name, contender.kind, contender.sides)
        rows[contender.name] = row
        try:
            seal, open_, row.note = contender.build(fx, data)
            seal()
            open_()
        except Exception as exc:  # a peer that cannot handle this size is reported, not fatal
            row.error = f"{type(exc).__name__}: {exc}"[:120]
            continue
        ops[f"{contender.name}\0seal"] = seal
        ops[f"{contender.name}\0open"] = open_
    measured: Measurement = measure(ops, budget)
    for key, warm in measured.warm.items():
        name, side = key.split("\0")
        setattr(rows[name], side, warm)
        setattr(rows[name], f"{side}_first", measured.first[key])
    return SizeResult(size, measured.rounds, rows)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def peer_ratios(result: SizeResult) -> dict[str, dict[str, float | None]]:
    """Warm round-trip time of the envelope over each peer's (< 1: the envelope is faster)."""
    peers: dict[str, float | None] = {name: result.total(name) for name in PEERS}
    jwe, paseto = peers["jwe"], peers["paseto"]
    peers["jwe+paseto"] = None if jwe is None or paseto is None else jwe + paseto
    return {
        peer: {
            "binary": ratio(result.total("envelope"), time_ns),
            "text": ratio(result.total("envelope+text"), time_ns),
        }
        for peer, time_ns in peers.items()
    }


# -- reporting -----------------------------------------------------------------------


def size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def fmt_us(value_ns: float | None) -> str:
    if value_ns is None:
        return "-"
    us = value_ns / 1000
    return f"{us:,.1f}" if us < 10_000 else f"{us:,.0f}"


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def print_tables(report: dict[str, Any], results: list[SizeResult]) -> None:
    env = report["environment"]
    print(
        f"envelope v1 benchmark ({report['mode']}): Python {env['python']}, cryptography {env['cryptography']}, "
        f"{env['openssl']}, {env['machine']}, {env['cpus']} CPUs"
    )
    print(
        "microseconds per call: median and p90 of warm calls in interleaved rounds; round trip = seal median "
        "+ open median;\nMiB/s = plaintext / round trip; 1st call = round trip of the first call in each round "
        "(after the other contenders ran)"
    )
    head = (
        f"{'contender':<14} {'ops':<16} {'seal med':>10} {'seal p90':>10} {'open med':>10} {'open p90':>10} "
        f"{'round trip':>11} {'MiB/s':>9} {'1st call':>10}  note"
    )
    for result in results:
        print()
        print(f"== {size_label(result.size)} ({result.size} B plaintext, {result.rounds} rounds) ==")
        print(head)
        print("-" * len(head))
        for row in result.rows.values():
            ops = "/".join(row.sides)
            if row.error is not None:
                print(f"{row.name:<14} {ops:<16} cannot do this size: {row.error}")
                continue
            assert row.seal is not None and row.open is not None
            mib_s = row.mib_s(result.size)
            print(
                f"{row.name:<14} {ops:<16} {fmt_us(row.seal.median_ns):>10} {fmt_us(row.seal.p90_ns):>10} "
                f"{fmt_us(row.open.median_ns):>10} {fmt_us(row.open.p90_ns):>10} {fmt_us(row.total_ns):>11} "
                f"{'-' if mib_s is None else f'{mib_s:,.1f}':>9} {fmt_us(row.first_total_ns):>10}  {row.note}"
            )

    print()
    print("envelope / peer, warm round trip (< 1.00: the envelope is faster); binary envelope | text envelope")
    print(f"{'peer':<14}" + "".join(f"{size_label(r.size):>17}" for r in results))
    for peer in (*PEERS, "jwe+paseto"):
        cells = []
        for r in results:
            pair = report["results"][str(r.size)]["envelope_over_peer"][peer]
            cells.append(f"{fmt_ratio(pair['binary']) + ' | ' + fmt_ratio(pair['text']):>17}")
        print(f"{peer:<14}" + "".join(cells))
    print("fernet: symmetric AES-128-CBC + HMAC, no public-key step; jwe: encryption only; paseto: signature only;")
    print("jwe+paseto: the sum of both, the closest peer to what one envelope does. Peers emit text: compare the")
    print("text column.")

    print()
    print("overhead = (envelope seal + open) / (bare HPKE + Ed25519 seal + open):")
    for label, key in (("warm", "overhead_ratio"), ("1st call", "overhead_ratio_first_call")):
        by_size = ", ".join(f"{size_label(int(k))} {fmt_ratio(v, 3)}" for k, v in report[key].items())
        print(f"  {label:<9} {by_size}")
    tp = report["throughput_1m"]
    print(
        f"1 MiB seal + open: envelope {fmt_ratio(tp['envelope_mib_s'], 1)} MiB/s, raw AES-256-GCM "
        f"{fmt_ratio(tp['aes_256_gcm_mib_s'], 1)} MiB/s, bare HPKE + Ed25519 {fmt_ratio(tp['bare_mib_s'], 1)} MiB/s, "
        f"HPKE alone {fmt_ratio(tp['hpke_mib_s'], 1)} MiB/s"
    )
    print(
        f"1 MiB ratios: throughput_ratio_1m (envelope / AES-GCM) {fmt_ratio(report['throughput_ratio_1m'], 3)}, "
        f"bare_throughput_ratio_1m (bare / AES-GCM, the ceiling with Ed25519 over the ciphertext) "
        f"{fmt_ratio(report['bare_throughput_ratio_1m'], 3)}, envelope_vs_bare_1m "
        f"{fmt_ratio(report['envelope_vs_bare_1m'], 3)}"
    )
    print(
        f"import isolation.transport: {fmt_ratio(report['import_ms'], 1)} ms "
        f"(runs {', '.join(f'{v:.1f}' for v in report['import_runs_ms'])}); "
        f"floor (hpke + ed25519 + msgpack): {fmt_ratio(report['import_floor_ms'], 1)} ms "
        f"(runs {', '.join(f'{v:.1f}' for v in report['import_floor_runs_ms'])})"
    )
    print(f"timer floor: {report['timer_floor_ns']:.0f} ns per timed call (not subtracted)")
    print()
    print("targets:")
    for name, target in report["targets"].items():
        line = f"  {name:<20} {fmt_ratio(target['value'], 3):>9}  target {target['target']:<9} {verdict(target['met'])}"
        if name == "throughput_ratio_1m":
            line += (
                f"  (ceiling {fmt_ratio(report['bare_throughput_ratio_1m'], 3)} with Ed25519 over the ciphertext; "
                f"envelope_vs_bare_1m {fmt_ratio(report['envelope_vs_bare_1m'], 3)}; see bench/README.md)"
            )
        print(line)


def build_report(
    mode: str, budget: Budget, results: list[SizeResult], imports: dict[str, list[float]], floor_ns: float
) -> dict[str, Any]:
    by_size = {r.size: r for r in results}
    overhead = {str(r.size): ratio(r.total("envelope"), r.total("bare")) for r in results}
    overhead_first = {str(r.size): ratio(r.first_total("envelope"), r.first_total("bare")) for r in results}
    big = by_size[THROUGHPUT_SIZE]
    envelope_mib_s = big.rows["envelope"].mib_s(THROUGHPUT_SIZE)
    aes_mib_s = big.rows["aes-256-gcm"].mib_s(THROUGHPUT_SIZE)
    bare_mib_s = big.rows["bare"].mib_s(THROUGHPUT_SIZE)
    throughput_ratio = ratio(envelope_mib_s, aes_mib_s)
    overhead_4k = overhead[str(RATIO_SIZE)]
    import_ms = statistics.median(imports["transport"])
    import_floor_ms = statistics.median(imports["floor"])

    def target(value: float | None, text: str, ok: Callable[[float], bool]) -> dict[str, Any]:
        return {"value": value, "target": text, "met": None if value is None else ok(value)}

    from cryptography.hazmat.backends.openssl import backend

    return {
        "benchmark": "envelope",
        "mode": mode,
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cryptography": cryptography.__version__,
            "openssl": backend.openssl_version_text(),
            "machine": platform.machine(),
            "system": platform.system(),
            "cpus": os.cpu_count(),
        },
        "budget": {
            "warmup_rounds": budget.warmup,
            "warm_calls_per_round": budget.calls,
            "min_rounds": budget.min_rounds,
            "max_rounds": budget.max_rounds,
            "seconds_per_size": budget.seconds,
        },
        "sizes": [r.size for r in results],
        "overhead_ratio_4k": overhead_4k,
        "throughput_ratio_1m": throughput_ratio,
        "bare_throughput_ratio_1m": ratio(bare_mib_s, aes_mib_s),
        "envelope_vs_bare_1m": ratio(envelope_mib_s, bare_mib_s),
        "import_ms": import_ms,
        "import_floor_ms": import_floor_ms,
        "import_runs_ms": imports["transport"],
        "import_floor_runs_ms": imports["floor"],
        "timer_floor_ns": floor_ns,
        "overhead_ratio": overhead,
        "overhead_ratio_first_call": overhead_first,
        "throughput_1m": {
            "envelope_mib_s": envelope_mib_s,
            "aes_256_gcm_mib_s": aes_mib_s,
            "bare_mib_s": bare_mib_s,
            "hpke_mib_s": big.rows["hpke"].mib_s(THROUGHPUT_SIZE),
        },
        "results": {
            str(r.size): {
                "rounds": r.rounds,
                "contenders": {name: row.to_json(r.size) for name, row in r.rows.items()},
                "envelope_over_peer": peer_ratios(r),
            }
            for r in results
        },
        "targets": {
            "overhead_ratio_4k": target(overhead_4k, f"<= {TARGET_OVERHEAD_4K}", lambda v: v <= TARGET_OVERHEAD_4K),
            "throughput_ratio_1m": target(
                throughput_ratio, f">= {TARGET_THROUGHPUT_1M}", lambda v: v >= TARGET_THROUGHPUT_1M
            ),
            "import_ms": target(import_ms, f"< {TARGET_IMPORT_MS:g} ms", lambda v: v < TARGET_IMPORT_MS),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI smoke run, a few seconds)")
    parser.add_argument("--json-file", metavar="PATH", help="also write the JSON object to PATH")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    budget = QUICK if args.quick else FULL

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    fx = Fixtures()
    plaintext = os.urandom(max(SIZES))
    results = []
    for size in SIZES:
        progress(f"measuring {size_label(size)} ...")
        results.append(measure_size(fx, size, plaintext[:size], budget))
    progress("measuring import time ...")
    imports = import_times_ms(
        {"transport": TRANSPORT_IMPORT, "floor": FLOOR_IMPORT},
        QUICK_IMPORT_RUNS if args.quick else FULL_IMPORT_RUNS,
        cwd=str(REPO),
    )
    report = build_report(mode, budget, results, imports, timer_floor_ns())

    document = json.dumps(report, indent=2)
    if args.json_file:
        Path(args.json_file).write_text(document + "\n", encoding="utf-8")
    if args.json:
        print(document, flush=True)
        missed = [name for name, t in report["targets"].items() if t["met"] is False]
        progress("targets: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    else:
        print_tables(report, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
