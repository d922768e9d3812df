"""The alerts worker: follows the ledger's budget events and the anomalies' log into triggers
(`alert_triggers.py`), and delivers each trigger's messages through the channels.

Each delivery runs as its own task with a timeout, so a failing or slow channel never holds up
another channel, the next trigger, the ledger or metering (which never wait for alerts at all).
A delivery is claimed (a recorded lease) before each attempt, so two workers never send it at
once; a failure is retried on the schedule of `domain/alerts/retry.py`, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID

import anyio

from domain.alerts.retry import RetrySchedule
from domain.alerts.signing import webhook_secret
from domain.alerts.trigger import PENDING, Delivery
from domain.ports.notifier import Notification, NotificationFailed, Notifier
from domain.services.alerts import Alerts
from infra.workers.alert_triggers import TriggerFollower

log = logging.getLogger(__name__)
USERS_WEBHOOK = "webhook_for_users"  # the channel of users' own rules' webhooks: public hosts only
LEASE_MARGIN_S = 30.0  # a lease outlives the attempt's timeout by this much


class AlertsWorker:
    def __init__(self, alerts: Alerts, follower: TriggerFollower, channels: dict[str, Notifier],
                 server_secret: bytes, schedule: RetrySchedule | None = None, timeout_s: float = 10.0,
                 idle_s: float = 0.1) -> None:
        self.alerts, self.follower, self.channels = alerts, follower, channels
        self.server_secret = server_secret
        self.schedule = schedule or RetrySchedule()
        self.timeout_s, self.idle_s = timeout_s, idle_s
        self.pending: dict[UUID, datetime] = {}  # delivery id -> when it is next due
        self._deliveries_at = 0
        self.inflight: dict[UUID, asyncio.Task] = {}
        self.sent = self.failed = self.dead = 0

    def start(self) -> None:
        installed = self.alerts.install_defaults()
        if installed:
            log.info("alerts: installed %d default rules", installed)

    # ----- one round -----------------------------------------------------------------------

    def follow_once(self) -> int:
        """Records the triggers one page of each followed log fires, then learns what is due."""
        read = self.follower.follow_once()
        self.refresh_pending()
        return read

    def refresh_pending(self) -> None:
        changed, self._deliveries_at = self.alerts.delivery_changes(self._deliveries_at)
        for delivery_id in changed:
            delivery = self.alerts.delivery(delivery_id)
            if delivery is not None and delivery.status == PENDING and delivery.next_at is not None:
                self.pending[delivery_id] = max(delivery.next_at, delivery.leased_until or delivery.next_at)
            else:
                self.pending.pop(delivery_id, None)

    def start_due(self) -> int:
        """Starts a task for each due delivery not already under way; returns how many."""
        now = self.alerts.clock.now()
        due = [i for i, at in list(self.pending.items()) if at <= now and i not in self.inflight]
        for delivery_id in due:
            task = asyncio.ensure_future(self.deliver(delivery_id))
            self.inflight[delivery_id] = task
            task.add_done_callback(lambda _t, i=delivery_id: self.inflight.pop(i, None))
        return len(due)

    async def run_once(self) -> int:
        read = await anyio.to_thread.run_sync(self.follow_once)
        return read + self.start_due()

    async def run(self, stop: asyncio.Event) -> None:
        await anyio.to_thread.run_sync(self.start)
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                # the store may be briefly unavailable; positions and leases are stored, so a
                # retry records nothing twice
                log.exception("alerts worker: a round failed; retrying")
                busy = 0
                await asyncio.sleep(1)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_s)
        await self.drain()

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for deliveries under way (their outcome is recorded), at most the attempt timeout."""
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=timeout_s or self.timeout_s + 1)

    async def aclose(self) -> None:
        """Closes the channels that hold connections (the webhook client)."""
        for channel in {id(c): c for c in self.channels.values()}.values():  # one may serve two names
            close = getattr(channel, "aclose", None)
            if close is not None:
                await close()

    # ----- one delivery --------------------------------------------------------------------

    async def deliver(self, delivery_id: UUID) -> None:
        lease = timedelta(seconds=self.timeout_s + LEASE_MARGIN_S)
        try:
            delivery = await anyio.to_thread.run_sync(self.alerts.claim, delivery_id, lease)
            if delivery is None:
                return  # not due after all, or another worker has it: refresh_pending will tell
            error, permanent = await self._attempt(delivery)
            await anyio.to_thread.run_sync(self._record, delivery_id, error, permanent)
        except Exception:
            log.exception("alerts worker: delivery %s could not be recorded; it is tried again "
                          "when its lease ends", delivery_id)
        finally:
            await anyio.to_thread.run_sync(self._refresh_one, delivery_id)

    async def _attempt(self, delivery: Delivery) -> tuple[str | None, bool]:
        rule = await anyio.to_thread.run_sync(self.alerts.rule, delivery.rule_id)
        if rule is None:  # deleting a rule is how an admin stops its retries
            return "the alert rule was deleted; not sent", True
        name = delivery.channel
        if name == "webhook" and rule.owner is not None:
            # A user's webhook goes to public hosts only, whatever the deployment allows its
            # admins: the host was public when the rule was set, and a name that resolves to a
            # private address by the time of sending (DNS rebinding) must not reach it.
            name = USERS_WEBHOOK
        channel = self.channels.get(name) or self.channels.get(delivery.channel)
        if channel is None:
            return f"no {delivery.channel} channel is configured in this process", True
        try:
            await asyncio.wait_for(channel.notify(self._notification(delivery, rule.secret_version)),
                                   self.timeout_s)
        except NotificationFailed as exc:
            return str(exc) or type(exc).__name__, exc.permanent
        except TimeoutError:
            return f"the {delivery.channel} channel did not answer within {self.timeout_s:g} s", False
        except Exception as exc:  # noqa: BLE001 - a channel's bug is a failed attempt, not a dead worker
            return f"{type(exc).__name__}: {exc}", False
        return None, False

    def _notification(self, delivery: Delivery, secret_version: int) -> Notification:
        secret = None
        if delivery.channel == "webhook":  # signed with the rule's current secret, if it was rotated
            secret = webhook_secret(self.server_secret, delivery.rule_id, secret_version)
        return Notification(str(delivery.id), delivery.recipient, delivery.subject, delivery.body,
                            signing_secret=secret)

    def _record(self, delivery_id: UUID, error: str | None, permanent: bool) -> None:
        now = self.alerts.clock.now()

        def outcome(d: Delivery) -> None:
            if error is None:
                d.succeed(now)
            else:
                d.fail(error, permanent,
                       self.schedule.next_try(d.attempts, now, random.random(), permanent),  # noqa: S311
                       now)
        delivery = self.alerts.record_outcome(delivery_id, outcome)
        if error is None:
            self.sent += 1
        elif delivery.status == PENDING:
            self.failed += 1
            log.warning("alert %s via %s to %s failed (attempt %d, retried at %s): %s", delivery_id,
                        delivery.channel, shown(delivery), delivery.attempts, delivery.next_at, error)
        else:
            self.dead += 1
            log.error("alert %s via %s to %s dead-lettered after %d attempts: %s", delivery_id,
                      delivery.channel, shown(delivery), delivery.attempts, error)

    def _refresh_one(self, delivery_id: UUID) -> None:
        delivery = self.alerts.delivery(delivery_id)
        if delivery is not None and delivery.status == PENDING and delivery.next_at is not None:
            self.pending[delivery_id] = max(delivery.next_at, delivery.leased_until or delivery.next_at)
        else:
            self.pending.pop(delivery_id, None)


def shown(delivery) -> str:
    """A recipient fit for a log line: a webhook URL's origin only, since paths and queries often
    carry a token (Slack's do); e-mail addresses and user ids as they are."""
    if delivery.channel != "webhook":
        return delivery.recipient
    parts = urlsplit(delivery.recipient)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"
