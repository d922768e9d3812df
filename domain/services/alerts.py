"""The alerts application: rules, the triggers they fire, each message's delivery, in-app notices.

Its store lies beside the ledger's (`alerts.sqlite`, or `alerts_*` tables on PostgreSQL). The
alerts worker records triggers together with its position in the log it follows (a tracking
record), so a page of budget events fires each trigger once even when read twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking

from domain.alerts.defaults import default_rules
from domain.alerts.notices import NoticeBoard
from domain.alerts.rule import AlertRule
from domain.alerts.rule_spec import MAX_OWN_RULES, RuleSpec, TooManyRules
from domain.alerts.trigger import AlertTrigger, Delivery
from domain.errors import DomainError
from domain.ports.clock import Clock
from domain.services.stored_topics import event_topics

A = TypeVar("A", bound=Aggregate)
RULE_TOPICS = event_topics(AlertRule)
DELIVERY_TOPICS = event_topics(Delivery)
ATTEMPTS = 5  # a command that keeps colliding with another writer gives up after this many tries


class Alerts(Application):
    name = "alerts"
    log_section_size = 1000
    snapshotting_intervals = {NoticeBoard: 50}  # noqa: RUF012 - the library's own class attribute

    def __init__(self, clock: Clock, env: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        self.clock = clock
        self._boards = threading.Lock()
        self._owned = threading.Lock()
        # rules() reads the rules' log from where it last stopped: listing and counting every rule
        # must not load every rule again (a user's rule count is checked on each creation)
        self._rules_lock = threading.Lock()
        self._rules_read = 0
        self._rules_kept: dict[UUID, AlertRule | None] = {}

    @classmethod
    def beside(cls, app: Application, clock: Clock) -> Alerts:
        """The alerts store next to another application's (the same database or directory)."""
        return cls(clock, env=dict(app.env))

    def construct_recorder(self):  # type: ignore[no-untyped-def]
        """A process recorder: triggers are stored with the followed log's position."""
        return self.factory.process_recorder()

    # ----- rules ---------------------------------------------------------------------------

    def create_rule(self, spec: RuleSpec, owner: str | None = None, rule_id: UUID | None = None) -> AlertRule:
        """A new rule; a user (`owner`) who keeps MAX_OWN_RULES already is refused (TooManyRules).

        The count and the save are one step within this process; replicas creating one user's
        rules at the same moment may pass the cap by one each."""
        rule = AlertRule(rule_id=rule_id or uuid4(), owner=owner, spec=spec.state(), at=self.clock.now())
        if owner is None:
            self.save(rule)
            return rule
        with self._owned:
            kept = sum(1 for r in self.rules() if r.owner == owner)
            if kept >= MAX_OWN_RULES:
                raise TooManyRules(f"user {owner} keeps {kept} alert rules, the most a user may keep "
                                   f"({MAX_OWN_RULES}); delete one they no longer need, or ask an admin "
                                   "for a rule that covers more (a global or team rule)")
            self.save(rule)
        return rule

    def change_rule(self, rule_id: UUID, spec: RuleSpec) -> AlertRule:
        return self._change(rule_id, AlertRule, lambda r: r.change(spec, self.clock.now()))

    def delete_rule(self, rule_id: UUID) -> AlertRule:
        return self._change(rule_id, AlertRule, lambda r: r.delete(self.clock.now()))

    def rotate_secret(self, rule_id: UUID) -> AlertRule:
        return self._change(rule_id, AlertRule, lambda r: r.rotate_secret(self.clock.now()))

    def rule(self, rule_id: UUID) -> AlertRule | None:
        """A rule that exists and is not deleted."""
        rule = self._find(rule_id, AlertRule)
        return None if rule is None or rule.deleted else rule

    def rules(self) -> list[AlertRule]:
        """Every rule not deleted, oldest first (treat them as read-only: they are kept between
        calls, and only the rules changed since the last call are loaded again)."""
        with self._rules_lock:
            ids, self._rules_read = self.rule_changes(self._rules_read)
            for rule_id in ids:
                self._rules_kept[rule_id] = self.rule(rule_id)
            return [r for r in self._rules_kept.values() if r is not None]

    def rule_changes(self, after: int) -> tuple[list[UUID], int]:
        """The rules changed after log position `after` (first change first), and the new position."""
        return self._changes(after, RULE_TOPICS)

    def install_defaults(self) -> int:
        """Creates the default rules not yet made; returns how many it created."""
        made = 0
        for rule_id, spec in default_rules():
            if self._find(rule_id, AlertRule) is not None:
                continue
            try:
                self.create_rule(spec, rule_id=rule_id)
                made += 1
            except IntegrityError:
                pass  # another process installed it first
        return made

    # ----- triggers (the alerts worker) ----------------------------------------------------

    def position(self, source: str) -> int:
        """How far the worker has read the log of application `source` (0: nothing yet)."""
        return self.recorder.max_tracking_id(source) or 0

    def record_triggers(self, fired: Sequence[tuple[AlertTrigger, Sequence[Delivery]]],
                        position: Tracking) -> int:
        """Stores new triggers and their deliveries with the log position, in one transaction.

        A position already stored records nothing; a trigger already stored (another worker,
        a replayed log) is dropped with its deliveries. Returns how many triggers were stored."""
        for _attempt in range(ATTEMPTS):
            if self.recorder.has_tracking_id(position.application_name, position.notification_id):
                return 0
            processing = ProcessingEvent(position)
            for trigger, deliveries in fired:
                processing.collect_events(trigger, *deliveries)
            try:
                self._notify(self._record(processing))
                return len(fired)
            except IntegrityError:
                fired = [(t, d) for t, d in fired if self._find(t.id, AlertTrigger) is None]
        raise IntegrityError("alert triggers kept conflicting with another worker; retry the page")

    # ----- deliveries ----------------------------------------------------------------------

    def delivery(self, delivery_id: UUID) -> Delivery | None:
        return self._find(delivery_id, Delivery)

    def delivery_changes(self, after: int) -> tuple[list[UUID], int]:
        return self._changes(after, DELIVERY_TOPICS)

    def claim(self, delivery_id: UUID, lease: timedelta) -> Delivery | None:
        """Starts an attempt at a due delivery; None if it is not due or another worker has it."""
        delivery = self.delivery(delivery_id)
        if delivery is None or not delivery.claim(self.clock.now(), lease):
            return None
        try:
            self.save(delivery)
        except IntegrityError:
            return None  # another worker claimed it first
        return delivery

    def record_outcome(self, delivery_id: UUID, change: Callable[[Delivery], None]) -> Delivery:
        return self._change(delivery_id, Delivery, change)

    def deliveries(self, after: int = 0, limit: int = 50) -> tuple[list[Delivery], int | None]:
        """Deliveries in the order they were scheduled, from log position `after`; and the cursor
        of the next page (None at the end)."""
        found = self.notification_log.select(start=after + 1, limit=limit,
                                             topics=["meterline.NotificationScheduled"])
        page = [d for d in (self.delivery(n.originator_id) for n in found) if d is not None]
        return page, (found[-1].id if len(found) == limit else None)

    # ----- in-app notices ------------------------------------------------------------------

    def post_notice(self, user_id: str, notice_id: str, subject: str, text: str,
                    data: dict[str, Any], type_: str = "meterline.alert.triggered") -> bool:
        """Posts a notice on the user's board once (by id); False if it was posted already."""
        posted: list[bool] = []
        with self._boards:  # one board takes many posts at once: queue here rather than collide
            self._change(NoticeBoard.id_for(user_id), NoticeBoard,
                         lambda b: posted.append(b.post(notice_id, subject, text, data, self.clock.now(),
                                                        type_)),
                         create=lambda: NoticeBoard(user_id=user_id, at=self.clock.now()))
        return posted[-1]

    def notices(self, user_id: str) -> list[dict[str, Any]]:
        board = self._find(NoticeBoard.id_for(user_id), NoticeBoard)
        return board.listing() if board else []

    def acknowledge(self, user_id: str, notice_id: str) -> bool:
        """Marks the user's notice read; False if the user has no such notice."""
        if self._find(NoticeBoard.id_for(user_id), NoticeBoard) is None:
            return False
        done: list[bool] = []
        self._change(NoticeBoard.id_for(user_id), NoticeBoard,
                     lambda b: done.append(b.acknowledge(notice_id, self.clock.now())))
        return done[-1]

    # ----- helpers -------------------------------------------------------------------------

    def _changes(self, after: int, topics: Sequence[str]) -> tuple[list[UUID], int]:
        changed: dict[UUID, None] = {}
        while batch := self.notification_log.select(start=after + 1, limit=1000, topics=topics):
            changed.update((n.originator_id, None) for n in batch)
            after = batch[-1].id
        return list(changed), after

    def _find(self, aggregate_id: UUID, cls: type[A]) -> A | None:
        try:
            found = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, cls) else None

    def _change(self, aggregate_id: UUID, cls: type[A], change: Callable[[A], Any],
                create: Callable[[], A] | None = None) -> A:
        """Applies a command to a fresh copy and saves it, again if another writer got there first."""
        for _attempt in range(ATTEMPTS):
            found = self._find(aggregate_id, cls)
            if found is None:
                if create is None:
                    raise DomainError(f"{cls.__name__} {aggregate_id} does not exist")
                found = create()
            change(found)
            try:
                self.save(found)
                return found
            except IntegrityError:
                continue
        raise IntegrityError(f"{cls.__name__} {aggregate_id} kept changing under this command; retry it")
