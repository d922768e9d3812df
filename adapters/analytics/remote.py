"""The analytics store of another process, asked over its unix socket (`remote_server`).

On the embedded default the projector's process owns chDB (one process per directory) and
serves it; the gateway's `/api/usage` reads come here. Blocking, like every AnalyticsStore:
call it from worker threads. Each thread keeps one keep-alive connection. Every call is
safe to repeat (inserts count a fact once), so a call whose connection fails is sent again
on a new one, for up to `wait_s` while the owner restarts.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.analytics.remote_audit import audit_query_data
from adapters.analytics.remote_server import analytics_query_data, figures_of, query_data, recent_of
from domain.audit import ChainedEntry
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.ports.audit_index import AuditIndexQuery, check_index_query
from domain.usage import RequestMetered
from domain.usage_figures import AnalyticsQuery, Figures

# A search has the trail to fall back on: it waits this long for a restarting owner, not `wait_s`.
AUDIT_READ_WAIT_S = 1.0
_GONE = (ConnectionError, FileNotFoundError, http.client.RemoteDisconnected,
         http.client.CannotSendRequest, http.client.BadStatusLine, TimeoutError)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class RemoteAnalytics:
    """AnalyticsStore served by the process that owns it, at the unix socket `path`."""

    def __init__(self, path: Path | str, timeout_s: float = 60, wait_s: float = 15) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s  # a month grouped over millions of facts takes a while
        self.wait_s = wait_s
        self._local = threading.local()
        self._opened: list[_UnixConnection] = []
        self._opened_lock = threading.Lock()

    @property
    def rollup_timezone(self) -> str:
        """The owner's rollup time zone."""
        return str(self._call("/schema", {})["rollup_timezone"])

    def ensure_schema(self) -> None:
        self._call("/schema", {})

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        for fact in facts:  # refused here: an ISO time without an offset would not say it was naive
            if fact.occurred_at.tzinfo is None or fact.occurred_at.utcoffset() is None:
                raise ValueError(f"fact {fact.event_id}: occurred_at must be timezone-aware")
        if facts:
            self._call("/insert", {"facts": [fact.to_data() for fact in facts], "batch_id": batch_id})

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        """The owner's store makes a batch a crash may have cut short whole (see its adapter)."""
        if facts:
            self._call("/insert", {"facts": [fact.to_data() for fact in facts], "batch_id": batch_id,
                                   "recover": True})

    def figures(self, query: AnalyticsQuery) -> list[Figures]:
        """Dashboard figures per group, as the owner's store answers them."""
        return [figures_of(row) for row in self._call("/figures", analytics_query_data(query))["rows"]]

    def delete_since(self, moment: datetime | None) -> None:
        """Deletes every fact at or after `moment` (all when None) from the owner's store."""
        self._call("/delete_since", {"moment": None if moment is None else moment.isoformat()})

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        return [UsageTotals(**row) for row in self._call("/usage", query_data(query))["rows"]]

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first; a request's parts are one entry."""
        answer = self._call("/recent", {"user_id": user_id, "limit": limit})
        return [recent_of(row) for row in answer["rows"]]

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        return int(self._call("/count", {})["count"])

    def insert_audit(self, entries: Sequence[ChainedEntry]) -> None:
        if entries:
            self._call("/audit/insert", {"entries": [chained.as_record() for chained in entries]})

    def audit_entries(self, query: AuditIndexQuery) -> list[ChainedEntry]:
        """The matching entries of the owner's index, newest first."""
        check_index_query(query)  # refused here: a naive time would not survive ISO text
        rows = self._call("/audit/entries", audit_query_data(query), AUDIT_READ_WAIT_S)["rows"]
        return [ChainedEntry.from_record(row) for row in rows]

    def audit_position(self) -> int:
        return int(self._call("/audit/position", {}, AUDIT_READ_WAIT_S)["position"])

    def delete_audit(self) -> None:
        self._call("/audit/delete", {})

    def close(self) -> None:
        """Closes every thread's connection (a thread that calls again opens it again)."""
        with self._opened_lock:
            opened = list(self._opened)
        for connection in opened:
            connection.close()

    def _call(self, path: str, body: dict[str, Any], wait_s: float | None = None) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        deadline = time.monotonic() + (self.wait_s if wait_s is None else wait_s)
        while True:
            try:
                status, answer = self._send(path, payload)
                break
            except _GONE as error:
                self._local.connection.close()  # the next request opens a new one
                if time.monotonic() >= deadline:
                    raise ConnectionError(
                        f"the analytics store at {self.path} does not answer ({error}): is the "
                        "projector running? On the embedded default it owns the analytics") from error
                time.sleep(0.1)
        if status == 400:
            raise ValueError(answer["error"])
        if status != 200:
            raise RuntimeError(f"the analytics store failed: {answer.get('error', status)}")
        return answer

    def _send(self, path: str, payload: bytes) -> tuple[int, dict[str, Any]]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = _UnixConnection(self.path, self.timeout_s)
            with self._opened_lock:
                self._opened.append(connection)
        connection.request("POST", path, payload, {"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
