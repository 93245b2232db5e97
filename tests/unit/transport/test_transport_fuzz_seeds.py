"""The fuzz targets, run over their committed seeds and simple mutations of them.

Keeps the targets and seeds working between fuzzing campaigns: the envelope seeds
must still open with the committed fuzz keys, and no seed or mutation may make a
target raise.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from isolation.transport import Keyset, envelope, open_envelope

FUZZ = Path(__file__).resolve().parents[3] / "fuzz"
TARGETS = ("open_envelope", "load_keyset", "codec_roundtrip")


def _module(name: str) -> ModuleType:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location(f"fuzz_target_{name}", FUZZ / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seeds(target: str) -> list[Path]:
    seeds = sorted((FUZZ / "corpus" / target).iterdir())
    assert seeds, f"no seeds for {target}"
    return seeds


def _mutations(seed: bytes) -> Iterator[bytes]:
    yield seed
    step = max(1, len(seed) // 23)
    for cut in range(0, len(seed), step):
        yield seed[:cut]
        flipped = bytearray(seed)
        flipped[cut] ^= 1 << (cut % 8)
        yield bytes(flipped)
        yield seed[:cut] + b"\x00" + seed[cut:]
    yield seed + b"\xff"


@pytest.mark.parametrize("target", TARGETS)
def test_targets_accept_their_seeds_and_mutations(target: str) -> None:
    one_input: Callable[[bytes], None] = _module(target).build()
    for seed in _seeds(target):
        for data in _mutations(seed.read_bytes()):
            one_input(data)


def test_envelope_seeds_open_with_the_fuzz_keys() -> None:
    common = _module("_fuzzing")
    signer = Keyset.load(common.KEYS / "signer.json").public()
    for suite in (1, 2):
        recipient = Keyset.load(common.KEYS / f"recipient-s{suite}.json")
        text = (FUZZ / "corpus" / "open_envelope" / f"text-suite{suite}").read_bytes()[1:]
        binary = (FUZZ / "corpus" / "open_envelope" / f"binary-suite{suite}").read_bytes()[1:]
        opened = open_envelope(text, signers=signer, recipient=recipient, now=common.NOW + 1)
        assert opened.header.suite == suite
        assert envelope.from_text(text) == binary


def test_public_seed_keysets_hold_no_private_keys() -> None:
    for seed in _seeds("load_keyset"):
        keyset = Keyset.from_json(seed.read_bytes())
        assert keyset.has_private == seed.name.endswith("-private")
