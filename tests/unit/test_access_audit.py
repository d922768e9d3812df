"""The gateway's access-event queue: counted per source and minute, bounded under any flood, and
nothing lost when the trail is briefly unavailable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapters.clock import FixedClock
from domain.audit import AuditEntry
from gateway.access_audit import AccessAudit

START = datetime(2025, 3, 3, 9, 30, 5, tzinfo=UTC)


class Sink:
    def __init__(self, fail: int = 0) -> None:
        self.entries: list[AuditEntry] = []
        self.fail = fail

    def __call__(self, entries) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("store unavailable")
        self.entries.extend(entries)


def test_a_flood_of_bad_keys_from_one_source_is_one_entry_per_minute_with_its_count() -> None:
    clock, sink = FixedClock(START), Sink()
    audit = AccessAudit(clock, sink)
    for n in range(30_000):
        audit.auth_failed("v1", "203.0.113.7", "invalid_api_key" if n % 3 else "missing_token")
        if n == 19_999:
            clock.advance(timedelta(minutes=1))
    asyncio.run(audit.flush())
    assert [e.details["count"] for e in sink.entries] == [20_000]  # the open minute waits
    asyncio.run(audit.flush(everything=True))
    assert [e.details["count"] for e in sink.entries] == [20_000, 10_000]
    first = sink.entries[0]
    assert (first.action, first.actor, first.source_ip, first.details["surface"]) == (
        "AuthFailed", "anonymous", "203.0.113.7", "v1")
    assert first.details["codes"] == "invalid_api_key:13333,missing_token:6667"
    assert first.details["window_start"] == "2025-03-03T09:30:00.000000Z"


def test_a_flood_from_many_sources_stays_bounded_and_keeps_the_total() -> None:
    clock, sink = FixedClock(START), Sink()
    audit = AccessAudit(clock, sink, max_buckets=100)
    for n in range(20_000):
        audit.auth_failed("api", f"2001:db8::{n:x}", "invalid_token")
    asyncio.run(audit.flush(everything=True))
    assert len(sink.entries) == 101
    assert sum(e.details["count"] for e in sink.entries) == 20_000
    overflow = [e for e in sink.entries if e.details.get("overflow")]
    assert len(overflow) == 1 and overflow[0].source_ip is None and overflow[0].details["count"] == 19_900


def test_entries_stay_queued_while_the_trail_fails_and_are_appended_once_it_recovers() -> None:
    clock, sink = FixedClock(START), Sink(fail=1)
    audit = AccessAudit(clock, sink, max_queue=3)
    for n in range(5):
        audit.admin_action(actor="admin", method="DELETE", path="/api/keys/{key_id}", target=f"key:{n}",
                           status=200, request_id=f"req-{n}", source_ip="127.0.0.1")
    assert asyncio.run(audit.flush()) == 0
    assert asyncio.run(audit.flush()) == 4
    assert [e.target for e in sink.entries[:3]] == ["key:0", "key:1", "key:2"]
    assert sink.entries[3].action == "AuditEntriesDropped" and sink.entries[3].details["count"] == 2


def test_a_request_target_the_trail_cannot_hold_still_leaves_an_entry() -> None:
    clock, sink = FixedClock(START), Sink()
    audit = AccessAudit(clock, sink)
    audit.admin_action(actor="user:bob", method="POST", path="/api/keys/{key_id}/rotate",
                       target="key:" + "x" * 5000, status=404, request_id=None, source_ip=None)
    asyncio.run(audit.flush())
    assert sink.entries[0].target == "" and sink.entries[0].details["target_unreadable"] is True


def test_without_a_trail_nothing_is_kept() -> None:
    audit = AccessAudit(FixedClock(START), None)
    audit.auth_failed("v1", "127.0.0.1", "invalid_api_key")
    assert not audit.buckets and asyncio.run(audit.flush(everything=True)) == 0
