"""Staged rotation: no envelope sealed during an overlap window breaks before it expires.

A state machine rotates a host's signer keyset and an environment's recipient keyset
(add, promote, retire, revoke, remove, with time passing), seals envelopes along the
way with the then-primary keys and any lifetime sealing allows (lifetime + clock skew
within both overlap windows), and opens them with the keysets as distributed at that
moment. An envelope must open until its expiry plus the skew readers allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from transport_support import EXAMPLES, NOW

from isolation.errors import EnvelopeRejected, KeysetError, PayloadError, RejectReason, RotationError
from isolation.transport import Keyset, KeyStatus, Subject, envelope

ROLES = ("signer", "recipient")
SUBJECT = Subject("dag", "task", "run")
SKEW = envelope.DEFAULT_SKEW


@dataclass
class Sealed:
    data: bytes
    issued_at: int
    expires_at: int
    signer_kid: str
    recipient_kid: str


@dataclass
class ModelKey:
    status: KeyStatus
    changed_at: int


class Rotation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = NOW
        self.keysets: dict[str, Keyset] = {}
        self.model: dict[str, dict[str, ModelKey]] = {}
        self.sealed: list[Sealed] = []
        self.forced: set[str] = set()

    @initialize(signer_overlap=st.integers(SKEW + 1, 900), recipient_overlap=st.integers(SKEW + 1, 900))
    def start(self, signer_overlap: int, recipient_overlap: int) -> None:
        self.keysets = {
            "signer": Keyset.generate_signer(now=self.now).with_overlap(signer_overlap),
            "recipient": Keyset.generate_recipient("env-rot", now=self.now).with_overlap(recipient_overlap),
        }
        for role, keyset in self.keysets.items():
            self.model[role] = {keyset.primary().kid: ModelKey(KeyStatus.PRIMARY, self.now)}

    # -- helpers ----------------------------------------------------------------

    def _overlap(self, role: str) -> int:
        return self.keysets[role].overlap_seconds

    def _in_flight(self, role: str, kid: str) -> bool:
        """Whether an envelope sealed under ``kid`` may still be valid (the overlap window)."""
        key = self.model[role][kid]
        return key.status is KeyStatus.RETIRING and self.now <= key.changed_at + self._overlap(role)

    def _pick(self, role: str, data: st.DataObject, *statuses: KeyStatus) -> str:
        # Insertion order, not kid order: kids are random, the draws must not depend on them.
        kids = [kid for kid, key in self.model[role].items() if not statuses or key.status in statuses]
        return data.draw(st.sampled_from(kids), label=f"{role} key")

    def _has(self, *statuses: KeyStatus) -> bool:
        return any(key.status in statuses for model in self.model.values() for key in model.values())

    def _expect_refused(self, role: str, call: object) -> None:
        before = self.keysets[role]
        with pytest.raises(RotationError):
            call()  # type: ignore[operator]
        assert self.keysets[role] is before

    # -- time ---------------------------------------------------------------------

    @rule(seconds=st.integers(0, 1000) | st.sampled_from([1, 59, 60, 61, 899, 900, 901]))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @precondition(lambda self: self._has(KeyStatus.RETIRING))
    @rule(delta=st.sampled_from([-1, 0, 1]), data=st.data())
    def advance_to_window_edge(self, delta: int, data: st.DataObject) -> None:
        """Jump to just around the end of a retiring key's overlap window."""
        roles = [r for r in ROLES if any(k.status is KeyStatus.RETIRING for k in self.model[r].values())]
        role = data.draw(st.sampled_from(roles), label="role")
        kid = self._pick(role, data, KeyStatus.RETIRING)
        edge = self.model[role][kid].changed_at + self._overlap(role) + delta
        self.now = max(self.now, edge)

    # -- rotation -----------------------------------------------------------------

    @precondition(lambda self: all(len(m) < 5 for m in self.model.values()))
    @rule(role=st.sampled_from(ROLES))
    def add(self, role: str) -> None:
        keyset, key = self.keysets[role].add(now=self.now)
        assert key.status is KeyStatus.PENDING
        assert keyset.primary() == self.keysets[role].primary()
        self.keysets[role] = keyset
        self.model[role][key.kid] = ModelKey(KeyStatus.PENDING, self.now)

    @rule(role=st.sampled_from(ROLES), data=st.data())
    def promote(self, role: str, data: st.DataObject) -> None:
        kid = self._pick(role, data)
        model = self.model[role]
        if model[kid].status not in (KeyStatus.PENDING, KeyStatus.RETIRING):
            self._expect_refused(role, lambda: self.keysets[role].promote(kid, now=self.now))
            return
        self.keysets[role] = self.keysets[role].promote(kid, now=self.now)
        for other, key in model.items():
            if key.status is KeyStatus.PRIMARY:
                model[other] = ModelKey(KeyStatus.RETIRING, self.now)
        model[kid] = ModelKey(KeyStatus.PRIMARY, self.now)

    @rule(role=st.sampled_from(ROLES), data=st.data())
    def retire(self, role: str, data: st.DataObject) -> None:
        kid = self._pick(role, data)
        if self.model[role][kid].status is not KeyStatus.PENDING:
            self._expect_refused(role, lambda: self.keysets[role].retire(kid, now=self.now))
            return
        self.keysets[role] = self.keysets[role].retire(kid, now=self.now)
        self.model[role][kid] = ModelKey(KeyStatus.RETIRING, self.now)

    @rule(role=st.sampled_from(ROLES), force=st.booleans(), data=st.data())
    def revoke(self, role: str, force: bool, data: st.DataObject) -> None:
        kid = self._pick(role, data)
        self._revoke(role, kid, force)

    @precondition(lambda self: self._has(KeyStatus.RETIRING))
    @rule(data=st.data())
    def revoke_retiring(self, data: st.DataObject) -> None:
        """The step that matters most: revoking a key that sealed until recently."""
        roles = [r for r in ROLES if any(k.status is KeyStatus.RETIRING for k in self.model[r].values())]
        role = data.draw(st.sampled_from(roles), label="role")
        self._revoke(role, self._pick(role, data, KeyStatus.RETIRING), force=False)

    def _revoke(self, role: str, kid: str, force: bool) -> None:
        key = self.model[role][kid]
        if key.status is KeyStatus.REVOKED:
            assert self.keysets[role].revoke(kid, now=self.now, force=force) == self.keysets[role]
            return
        if key.status is KeyStatus.PRIMARY or (self._in_flight(role, kid) and not force):
            self._expect_refused(role, lambda: self.keysets[role].revoke(kid, now=self.now, force=force))
            return
        if self._in_flight(role, kid):
            self.forced.add(kid)
        self.keysets[role] = self.keysets[role].revoke(kid, now=self.now, force=force)
        self.model[role][kid] = ModelKey(KeyStatus.REVOKED, self.now)

    @rule(role=st.sampled_from(ROLES), data=st.data())
    def remove(self, role: str, data: st.DataObject) -> None:
        kid = self._pick(role, data)
        if self.model[role][kid].status is not KeyStatus.REVOKED:
            self._expect_refused(role, lambda: self.keysets[role].remove(kid))
            return
        self.keysets[role] = self.keysets[role].remove(kid)
        del self.model[role][kid]

    # -- envelopes ----------------------------------------------------------------

    @rule(data=st.data())
    def seal(self, data: st.DataObject) -> None:
        longest = min(self._overlap(role) for role in ROLES) - SKEW
        lifetime = data.draw(st.integers(1, longest) | st.just(longest), label="lifetime")
        signer, recipient = self.keysets["signer"], self.keysets["recipient"]
        sealed = envelope.seal_bytes(
            b"payload", signer=signer, recipient=recipient.public(), subject=SUBJECT, lifetime=lifetime, now=self.now
        )
        self.sealed.append(Sealed(sealed, self.now, self.now + lifetime, signer.primary().kid, recipient.primary().kid))

    def _expected(self, item: Sealed) -> RejectReason | None:
        signer = self.model["signer"].get(item.signer_kid)
        recipient = self.model["recipient"].get(item.recipient_kid)
        if signer is None:
            return RejectReason.UNKNOWN_KEY
        if signer.status is KeyStatus.REVOKED:
            return RejectReason.REVOKED_KEY
        if self.now > item.expires_at + envelope.DEFAULT_SKEW:
            return RejectReason.EXPIRED
        if recipient is None:
            return RejectReason.UNKNOWN_KEY
        if recipient.status is KeyStatus.REVOKED:
            return RejectReason.REVOKED_KEY
        return None

    def _open(self, item: Sealed) -> RejectReason | None:
        # The keysets as distributed right now: through their JSON form.
        signers = Keyset.from_json(self.keysets["signer"].public().to_json())
        recipient = Keyset.from_json(self.keysets["recipient"].to_json())
        try:
            opened = envelope.open_bytes(item.data, signers=signers, recipient=recipient, now=self.now)
        except EnvelopeRejected as exc:
            return exc.reason
        assert opened.plaintext == b"payload"
        return None

    @rule(extra=st.integers(1, 1000))
    def seal_beyond_the_window(self, extra: int) -> None:
        """A lifetime that could outlive the overlap window is refused at sealing."""
        lifetime = min(self._overlap(role) for role in ROLES) - SKEW + extra
        with pytest.raises(PayloadError, match="overlap window"):
            envelope.seal_bytes(
                b"payload",
                signer=self.keysets["signer"],
                recipient=self.keysets["recipient"].public(),
                subject=SUBJECT,
                lifetime=lifetime,
                now=self.now,
            )

    @precondition(lambda self: self.sealed)
    @rule(data=st.data())
    def open_one(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.sealed), label="envelope")
        assert self._open(item) is self._expected(item)

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def keysets_follow_the_model(self) -> None:
        for role, keyset in self.keysets.items():
            assert {k.kid: (k.status, k.status_changed_at) for k in keyset} == {
                kid: (m.status, m.changed_at) for kid, m in self.model[role].items()
            }
            assert sum(k.status is KeyStatus.PRIMARY for k in keyset) == 1

    @invariant()
    def nothing_valid_was_revoked_without_force(self) -> None:
        """The property rotation exists for: an envelope within its validity still opens."""
        for item in self.sealed:
            if item.issued_at <= self.now <= item.expires_at + SKEW:
                for role, kid in (("signer", item.signer_kid), ("recipient", item.recipient_kid)):
                    if kid not in self.forced:
                        assert kid in self.model[role], f"{role} key {kid} removed while an envelope is valid"
                        assert self.model[role][kid].status is not KeyStatus.REVOKED, (
                            f"{role} key {kid} revoked at {self.now}, envelope valid until {item.expires_at}"
                        )

    def teardown(self) -> None:
        for item in self.sealed[-20:]:
            if (
                item.issued_at <= self.now <= item.expires_at + SKEW
                and not {item.signer_kid, item.recipient_kid} & self.forced
            ):
                assert self._open(item) is None


Rotation.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None)
TestRotation = Rotation.TestCase


# --------------------------------------------------------------------------- single steps


def test_revoke_waits_for_the_whole_overlap_window() -> None:
    keyset = Keyset.generate_recipient("env", now=NOW).with_overlap(600)
    old = keyset.primary().kid
    keyset, new = keyset.add(now=NOW)
    keyset = keyset.promote(new.kid, now=NOW + 10)
    # An envelope sealed under `old` at NOW + 10 with a 600 s lifetime is valid through NOW + 610.
    for moment in (NOW + 10, NOW + 609, NOW + 610):
        with pytest.raises(RotationError, match="overlap window") as info:
            keyset.revoke(old, now=moment)
        assert "--force" in info.value.diagnostics()
    assert keyset.revoke(old, now=NOW + 611).get(old).status is KeyStatus.REVOKED
    assert keyset.revoke(old, now=NOW + 10, force=True).get(old).status is KeyStatus.REVOKED


def test_rotation_refusals() -> None:
    keyset = Keyset.generate_signer(now=NOW)
    primary = keyset.primary().kid
    with pytest.raises(RotationError, match="primary"):
        keyset.revoke(primary, now=NOW, force=True)
    with pytest.raises(RotationError, match="only pending or retiring"):
        keyset.promote(primary, now=NOW)
    with pytest.raises(RotationError, match="only a pending key"):
        keyset.retire(primary, now=NOW)
    with pytest.raises(RotationError, match="not revoked"):
        keyset.remove(primary)
    with pytest.raises(KeysetError, match="no key"):
        keyset.promote("0" * 32, now=NOW)
    with pytest.raises(KeysetError, match="public keyset"):
        keyset.public().add(now=NOW)
    keyset, pending = keyset.add(now=NOW)
    # A pending key never sealed anything: it may be revoked at once.
    assert keyset.revoke(pending.kid, now=NOW).get(pending.kid).status is KeyStatus.REVOKED


def test_a_keyset_without_primary_cannot_seal() -> None:
    keyset = Keyset.generate_recipient("env", now=NOW)
    keyset, pending = keyset.add(now=NOW)
    keyset = keyset.promote(pending.kid, now=NOW)
    keyset = keyset.revoke(keyset.keys[0].kid, now=NOW, force=True)
    only_revoked = Keyset(keyset.purpose, keyset.name, (keyset.keys[0],))
    with pytest.raises(KeysetError, match="no primary") as info:
        only_revoked.primary()
    assert "promote" in info.value.diagnostics()


def test_a_lifetime_that_could_outlive_the_overlap_window_is_refused() -> None:
    # Regression: a lifetime equal to the overlap window let a revoke done by the book
    # (one window after the key stopped sealing) refuse an envelope within its skew.
    signer = Keyset.generate_signer(now=NOW).with_overlap(600)
    recipient = Keyset.generate_recipient("env", now=NOW)

    def seal(lifetime: int, signer: Keyset = signer, recipient: Keyset = recipient) -> bytes:
        return envelope.seal_bytes(
            b"x", signer=signer, recipient=recipient.public(), subject=SUBJECT, lifetime=lifetime, now=NOW
        )

    with pytest.raises(PayloadError, match=r"overlap window of the signer keyset 'host' \(600 s\)") as info:
        seal(600 - SKEW + 1)
    assert "with_overlap" in info.value.diagnostics()
    assert "docs/keys.md" in info.value.diagnostics()
    with pytest.raises(PayloadError, match=r"overlap window of the recipient keyset 'env'"):
        seal(600, signer=Keyset.generate_signer(now=NOW), recipient=recipient.with_overlap(600))

    # The longest lifetime allowed is still valid at the last second before the old key
    # may be revoked without force.
    old = signer.primary().kid
    data = seal(600 - SKEW)
    rotated, new = signer.add(now=NOW)
    rotated = rotated.promote(new.kid, now=NOW)
    last_valid = NOW + (600 - SKEW) + SKEW
    with pytest.raises(RotationError):
        rotated.revoke(old, now=last_valid)
    opened = envelope.open_bytes(data, signers=rotated.public(), recipient=recipient, now=last_valid)
    assert opened.plaintext == b"x"
    assert rotated.revoke(old, now=last_valid + 1).get(old).status is KeyStatus.REVOKED


def test_default_lifetime_and_overlap_fit() -> None:
    signer, recipient = Keyset.generate_signer(now=NOW), Keyset.generate_recipient("env", now=NOW)
    assert envelope.DEFAULT_LIFETIME + SKEW <= signer.overlap_seconds == recipient.overlap_seconds
    for lifetime in (envelope.DEFAULT_LIFETIME, signer.overlap_seconds - SKEW):
        envelope.seal_bytes(b"x", signer=signer, recipient=recipient.public(), subject=SUBJECT, lifetime=lifetime)
    with pytest.raises(PayloadError, match="overlap window"):
        envelope.seal_bytes(
            b"x", signer=signer, recipient=recipient.public(), subject=SUBJECT, lifetime=signer.overlap_seconds
        )
