"""The fixed cryptographic suites and the raw key material each one uses.

Suite 1: HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
Suite 2: HPKE base mode, ML-KEM-768+X25519 hybrid KEM, HKDF-SHA256, AES-256-GCM.
Origin (both): Ed25519. No suite is ever chosen from envelope content alone: the
header's suite must equal the suite of the recipient key it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

SUITE_X25519 = 1
SUITE_MLKEM768_X25519 = 2

_MLKEM_SEED = 64
_MLKEM_PUBLIC = 1184
_X25519 = 32


@dataclass(frozen=True)
class Suite:
    id: int
    name: str
    enc_length: int
    public_length: int
    private_length: int
    _hpke: Any

    def seal(self, plaintext: bytes, public: Any, info: bytes) -> bytes:
        """``enc || ciphertext`` for ``plaintext`` sealed to a loaded public key.

        One buffer, laid out as on the wire: the envelope takes it whole.
        """
        sealed: bytes = self._hpke.encrypt(plaintext, public, info=info)
        return sealed

    def open(self, sealed: bytes | memoryview, private: Any, info: bytes) -> bytes:
        """Open ``enc || ciphertext`` with a loaded private key.

        Failures raise ``InvalidTag`` or ``ValueError``.
        """
        result: bytes = self._hpke.decrypt(sealed, private, info=info)
        return result

    def encrypt(self, plaintext: bytes, public: Any, info: bytes) -> tuple[bytes, bytes]:
        """Return ``(enc, ciphertext)`` for ``plaintext`` sealed to a loaded public key."""
        sealed = self.seal(plaintext, public, info)
        return sealed[: self.enc_length], sealed[self.enc_length :]

    def decrypt(self, enc: bytes, ciphertext: bytes, private: Any, info: bytes) -> bytes:
        """Open with a loaded private key; failures raise ``InvalidTag`` or ``ValueError``."""
        return self.open(enc + ciphertext, private, info)


SUITES: dict[int, Suite] = {
    SUITE_X25519: Suite(
        SUITE_X25519,
        "HPKE-Base DHKEM(X25519,HKDF-SHA256) HKDF-SHA256 AES-256-GCM + Ed25519",
        enc_length=_X25519,
        public_length=_X25519,
        private_length=_X25519,
        _hpke=hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    ),
    SUITE_MLKEM768_X25519: Suite(
        SUITE_MLKEM768_X25519,
        "HPKE-Base ML-KEM-768+X25519 HKDF-SHA256 AES-256-GCM + Ed25519",
        enc_length=1088 + _X25519,
        public_length=_MLKEM_PUBLIC + _X25519,
        private_length=_MLKEM_SEED + _X25519,
        _hpke=hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    ),
}


def _x25519_public(raw: bytes) -> x25519.X25519PublicKey:
    """Load an X25519 public key, refusing the low-order points (RFC 7748, section 6.1).

    DH with a low-order point gives the all-zero secret whatever the private key, so a
    keyset holding one would seal envelopes anyone can open. Every clamped scalar is a
    multiple of the cofactor, so one exchange with any fixed scalar finds them.
    """
    public = x25519.X25519PublicKey.from_public_bytes(raw)
    try:
        _LOW_ORDER_PROBE.exchange(public)
    except ValueError:
        raise ValueError("X25519 public key is a low-order point") from None
    return public


_LOW_ORDER_PROBE = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32)))


def load_recipient_public(suite: int, raw: bytes) -> Any:
    if suite == SUITE_X25519:
        return _x25519_public(raw)
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC]),
        _x25519_public(raw[_MLKEM_PUBLIC:]),
    )


def load_recipient_private(suite: int, raw: bytes) -> Any:
    if suite == SUITE_X25519:
        return x25519.X25519PrivateKey.from_private_bytes(raw)
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM_SEED]),
        x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM_SEED:]),
    )


def generate_recipient(suite: int) -> tuple[bytes, bytes]:
    """A fresh ``(private, public)`` raw key pair for a recipient of ``suite``."""
    xk = x25519.X25519PrivateKey.generate()
    x_priv, x_pub = xk.private_bytes_raw(), xk.public_key().public_bytes_raw()
    if suite == SUITE_X25519:
        return x_priv, x_pub
    mk = mlkem.MLKEM768PrivateKey.generate()
    return mk.private_bytes_raw() + x_priv, mk.public_key().public_bytes_raw() + x_pub


def recipient_public_from_private(suite: int, private: bytes) -> bytes:
    if suite == SUITE_X25519:
        return x25519.X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    mk = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:_MLKEM_SEED])
    xk = x25519.X25519PrivateKey.from_private_bytes(private[_MLKEM_SEED:])
    return mk.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()


def check_recipient_public(suite: int, public: bytes) -> None:
    """Raise ``ValueError`` unless ``public`` loads as a key of ``suite`` (no low-order point)."""
    if len(public) != SUITES[suite].public_length:
        raise ValueError("wrong public key length")
    load_recipient_public(suite, public)


def generate_signer() -> tuple[bytes, bytes]:
    sk = ed25519.Ed25519PrivateKey.generate()
    return sk.private_bytes_raw(), sk.public_key().public_bytes_raw()


def load_signer_private(raw: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def load_signer_public(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def verify(public: ed25519.Ed25519PublicKey, signature: bytes | memoryview, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True
