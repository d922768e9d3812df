"""Which secrets open an API key, through issue, rotation, revocation, expiry and restarts.

The real system is what a gateway runs: the Registry on a (reopenable, in-memory) event
store, and the RegistryView that StoreFeed keeps in step with it, asked `key_for_secret`
for every secret ever minted, the way `authenticate` asks it. A restart closes both
applications, reopens them on the same store and folds a fresh view from the stored log.

The model is a deadline per secret, kept apart from the aggregate's single previous slot:

    a secret opens its key at t  iff  the key is usable at t (not revoked, not past
    expires_at)  and  t < the secret's deadline (none while it is the current secret)

A rotation gives the secret it retires the deadline now + grace (now without grace) and
cuts every secret retired before it to now: a later rotation can end a grace early (as
tests/integration/test_gateway_errors.py expects of two rotations) but never extend or
reopen one. So every secret a key ever had is refused once its own grace ends, whatever
later rotations do (issue 9, item 1). A rotation the key refuses mints a secret that never
opens anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env, open_applications
from adapters.eventstore.memory import forget
from domain.credentials import fingerprint, new_secret
from domain.errors import KeyNotUsableError
from domain.keys import ApiKey
from gateway.views.quota_guard import QuotaGuard
from gateway.views.registry_view import RegistryView
from gateway.views.store_feed import StoreFeed

START = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
SERVER_SECRET = b"key-secrets-machine-server-secret"
TICK = timedelta(microseconds=1)  # the smallest step a datetime takes: lands beside a deadline

GRACES = st.sampled_from([0, 1, 60, 600, 3600]) | st.integers(0, 7 * 24 * 3600)
STEPS = st.sampled_from([TICK, timedelta(seconds=1), timedelta(minutes=1), timedelta(minutes=10),
                         timedelta(hours=1), timedelta(days=1)]) | st.timedeltas(
    min_value=TICK, max_value=timedelta(days=8))


class Gateway:
    """The registry, a ledger beside it and the view a gateway keeps, opened on one named store."""

    def __init__(self, store: str, clock: FixedClock) -> None:
        self.registry, self.ledger = open_applications(memory_env(store), clock)
        self.view = RegistryView()
        self.feed = StoreFeed(self.registry, self.ledger, self.view, QuotaGuard(clock))
        self.feed.bootstrap()  # what a starting gateway does: fold the whole registry log

    def close(self) -> None:
        self.registry.close()
        self.ledger.close()


@dataclass
class KeyModel:
    revoked: bool = False
    expires_at: datetime | None = None
    hmacs: list[str] = field(default_factory=list)

    def usable_at(self, at: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or at < self.expires_at)


def open_store(clock: FixedClock) -> tuple[str, Gateway]:
    store = f"key-secrets-{uuid4()}"
    gateway = Gateway(store, clock)
    gateway.registry.register_user("u1")
    gateway.feed.pull()
    return store, gateway


def issue(gateway: Gateway, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    secret = new_secret()
    key = gateway.registry.issue_key("u1", "laptop", ["*"], fingerprint(secret, SERVER_SECRET),
                                     secret, expires_at=expires_at)
    gateway.feed.pull()
    return key, secret


def rotate(gateway: Gateway, key_id: UUID, grace_seconds: int) -> str:
    secret = new_secret()
    gateway.registry.rotate_key(key_id, fingerprint(secret, SERVER_SECRET), secret, grace_seconds)
    gateway.feed.pull()
    return secret


def opens(gateway: Gateway, secret: str, at: datetime) -> bool:
    return gateway.view.key_for_secret(fingerprint(secret, SERVER_SECRET), at) is not None


# ----- the reported scenario -------------------------------------------------------------------


def test_a_secret_retired_without_grace_stays_dead_when_a_later_rotation_has_grace() -> None:
    clock = FixedClock(START)
    store, gateway = open_store(clock)
    try:
        key, first = issue(gateway)
        second = rotate(gateway, key.id, grace_seconds=0)
        assert not opens(gateway, first, clock.now())
        clock.advance(minutes=1)
        third = rotate(gateway, key.id, grace_seconds=3600)

        assert not opens(gateway, first, clock.now())
        assert opens(gateway, second, clock.now()) and opens(gateway, third, clock.now())
        gateway.close()
        gateway = Gateway(store, clock)  # a restart folds the same events into a new view
        assert not opens(gateway, first, clock.now())
        assert opens(gateway, second, clock.now()) and opens(gateway, third, clock.now())
        assert not opens(gateway, second, clock.advance(hours=1))
    finally:
        gateway.close()
        forget(store)


# ----- the state machine -----------------------------------------------------------------------


class KeySecretsMachine(RuleBasedStateMachine):
    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(START)
        self.store, self.gateway = open_store(self.clock)
        self.model: dict[UUID, KeyModel] = {}
        self.owner: dict[str, UUID] = {}                      # every secret ever minted
        self.deadline: dict[str, datetime | None] = {}        # None: the key's current secret
        self.names: dict[str, str] = {}                       # secret -> "k1.s2", for notes

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def _mint(self, key_id: UUID, secret: str, deadline: datetime | None) -> str:
        key = self.model[key_id]
        key.hmacs.append(secret)
        self.owner[secret], self.deadline[secret] = key_id, deadline
        self.names[secret] = f"k{list(self.model).index(key_id) + 1}.s{len(key.hmacs)}"
        return self.names[secret]

    # ----- rules -------------------------------------------------------------------------------

    @initialize(target=keys, expires_in=st.none() | STEPS)
    def issue_first_key(self, expires_in: timedelta | None) -> UUID:
        return self.issue_key(expires_in)

    @rule(target=keys, expires_in=st.none() | STEPS)
    def issue_key(self, expires_in: timedelta | None) -> UUID:
        expires_at = self.now + expires_in if expires_in is not None else None
        key, secret = issue(self.gateway, expires_at)
        self.model[key.id] = KeyModel(expires_at=expires_at)
        name = self._mint(key.id, secret, None)
        note(f"issue {name} at {self.now.isoformat()}, expires {expires_at and expires_at.isoformat()}")
        return key.id

    @rule(key_id=keys, grace_seconds=GRACES)
    def rotate_key(self, key_id: UUID, grace_seconds: int) -> None:
        key = self.model[key_id]
        if not key.usable_at(self.now):
            with pytest.raises(KeyNotUsableError):
                rotate(self.gateway, key_id, grace_seconds)
            name = self._mint(key_id, new_secret(), self.now)  # refused: must never open the key
            note(f"rotate {name} at {self.now.isoformat()}: refused, the key is not usable")
            return
        for secret in key.hmacs:  # a rotation ends whatever grace an earlier one left running
            if self.deadline[secret] is not None:
                self.deadline[secret] = min(self.deadline[secret], self.now)
        retired = key.hmacs[-1]
        self.deadline[retired] = self.now + timedelta(seconds=grace_seconds)
        name = self._mint(key_id, rotate(self.gateway, key_id, grace_seconds), None)
        note(f"rotate to {name} at {self.now.isoformat()}, {self.names[retired]} "
             f"grace {grace_seconds} s")

    @rule(key_id=keys)
    def revoke_key(self, key_id: UUID) -> None:
        self.gateway.registry.revoke_key(key_id)
        self.gateway.feed.pull()
        self.model[key_id].revoked = True
        note(f"revoke k{list(self.model).index(key_id) + 1} at {self.now.isoformat()}")

    @rule()
    def expire_keys(self) -> None:
        # As the scheduler does it: with the keys the gateway's view holds.
        expired = self.gateway.registry.expire_keys(self.gateway.view.api_keys())
        self.gateway.feed.pull()
        note(f"expire at {self.now.isoformat()}: {expired} key(s)")

    @rule()
    def restart(self) -> None:
        self.gateway.close()
        self.gateway = Gateway(self.store, self.clock)
        note("restart: reopen the store and fold a fresh view")

    @rule(key_id=keys)
    def reload_key(self, key_id: UUID) -> None:
        """What StoreFeed does on a version gap: put a freshly loaded copy of the key."""
        self.gateway.view.put(self.gateway.registry.key(key_id))
        note(f"reload k{list(self.model).index(key_id) + 1} into the view")

    @rule(step=STEPS)
    def advance(self, step: timedelta) -> None:
        self.clock.advance(step)
        note(f"clock -> {self.now.isoformat()}")

    @rule(data=st.data(), before=st.sampled_from([TICK, timedelta(0)]))
    def advance_to_a_deadline(self, data: st.DataObject, before: timedelta) -> None:
        """Lands just before, or exactly on, a grace end or an expiry still ahead."""
        ahead = sorted({d for d in self.deadline.values() if d is not None and d > self.now}
                       | {k.expires_at for k in self.model.values()
                          if k.expires_at is not None and k.expires_at > self.now})
        if not ahead:
            return
        target = data.draw(st.sampled_from(ahead), label="deadline")
        self.clock.set(max(self.now, target - before))
        note(f"clock -> {self.now.isoformat()} (deadline {target.isoformat()})")

    # ----- invariants --------------------------------------------------------------------------

    @invariant()
    def every_secret_ever_minted_opens_its_key_iff_the_model_says_so(self) -> None:
        stored = {key_id: self.gateway.registry.key(key_id) for key_id in self.model}
        for secret, key_id in self.owner.items():
            deadline = self.deadline[secret]
            valid = self.model[key_id].usable_at(self.now) and (deadline is None or self.now < deadline)
            presented = fingerprint(secret, SERVER_SECRET)
            match = self.gateway.view.key_for_secret(presented, self.now)
            where = f"{self.names[secret]} at {self.now.isoformat()} (deadline {deadline})"
            assert stored[key_id].accepts(presented, self.now) == valid, f"{where}: the stored key disagrees"
            if not valid:
                assert match is None, f"{where} is accepted but must be refused"
                continue
            assert match is not None, f"{where} is refused but must be accepted"
            assert match.key.id == key_id, f"{where} opens another key"
            assert match.via_previous_secret == (deadline is not None), where

    def teardown(self) -> None:
        self.gateway.close()
        forget(self.store)


KeySecretsMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_key_secrets_state_machine = KeySecretsMachine.TestCase
