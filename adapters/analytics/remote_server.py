"""Serves an AnalyticsStore to `RemoteAnalytics` clients over HTTP on a unix socket.

Embedded chDB admits one process per data directory, the projector's; the gateway's usage
queries come here. The socket file is created 0600 in the data directory, so only the
user that runs Meterline can connect. Requests (JSON):

    POST /usage   a UsageQuery            -> {"rows": [UsageTotals fields, ...]}
    POST /recent  {"user_id", "limit"}     -> {"rows": [RecentRequest fields, time as ISO text]}
    POST /figures an AnalyticsQuery       -> {"rows": [Figures fields, ...]}
    POST /insert  {"facts": [fact data], "batch_id": str | null}  -> {}
    POST /delete_since {"moment": ISO text | null}               -> {}
    POST /count                           -> {"count": n}
    POST /schema                          -> {"rollup_timezone": the store's}
    POST /audit/insert {"entries": [chained entry records]}      -> {}
    POST /audit/entries an AuditIndexQuery -> {"rows": [chained entry records, newest first]}
    POST /audit/position                  -> {"position": n}
    POST /audit/delete                    -> {}

A ValueError of the store (a query or a fact it refuses) answers 400 with its message,
which the client raises as ValueError again; anything else answers 500.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from dataclasses import asdict
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from adapters.analytics.remote_audit import audit_answer
from domain.ports.analytics import AnalyticsStore, RecentRequest, UsageQuery
from domain.usage import RequestMetered
from domain.usage_figures import AnalyticsQuery, Figures

log = logging.getLogger(__name__)
MAX_BODY = 256 << 20  # an insert of a few hundred thousand facts; nothing larger is sent


def query_of(data: dict[str, Any]) -> UsageQuery:
    return UsageQuery(**{**data, "start": datetime.fromisoformat(data["start"]),
                         "end": datetime.fromisoformat(data["end"])})


def query_data(query: UsageQuery) -> dict[str, Any]:
    return {**asdict(query), "start": query.start.isoformat(), "end": query.end.isoformat()}


def analytics_query_of(data: dict[str, Any]) -> AnalyticsQuery:
    return AnalyticsQuery(**{**data, "start": datetime.fromisoformat(data["start"]),
                             "end": datetime.fromisoformat(data["end"]), "group_by": tuple(data["group_by"]),
                             "user_ids": None if data.get("user_ids") is None else tuple(data["user_ids"])})


def analytics_query_data(query: AnalyticsQuery) -> dict[str, Any]:
    return {**asdict(query), "start": query.start.isoformat(), "end": query.end.isoformat()}


def figures_of(data: dict[str, Any]) -> Figures:
    histogram = tuple((floor, count) for floor, count in data["latency_histogram"])
    return Figures(**{**data, "group": tuple(data["group"]), "latency_histogram": histogram})


def recent_data(row: RecentRequest) -> dict[str, Any]:
    return {**asdict(row), "occurred_at": row.occurred_at.isoformat()}


def recent_of(data: dict[str, Any]) -> RecentRequest:
    return RecentRequest(**{**data, "occurred_at": datetime.fromisoformat(data["occurred_at"])})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    store: AnalyticsStore


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the http.server naming
        try:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY:
                raise ValueError(f"a request body of {length} bytes is out of bounds")
            body = json.loads(self.rfile.read(length) or b"{}")
            status, answer = 200, self._answer(self.path, body)
        except (ValueError, TypeError, KeyError) as error:
            status, answer = 400, {"error": f"{type(error).__name__}: {error}"}
        except Exception as error:  # the store failed: the client sees why, the log has the trace
            log.exception("analytics server: %s failed", self.path)
            status, answer = 500, {"error": f"{type(error).__name__}: {error}"}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        store = self.server.store
        if path.startswith("/audit/"):
            return audit_answer(store, path, body)  # type: ignore[arg-type]  # the adapters are both
        if path == "/usage":
            return {"rows": [asdict(row) for row in store.usage(query_of(body))]}
        if path == "/recent":
            return {"rows": [recent_data(row)
                             for row in store.recent_requests(body["user_id"], body["limit"])]}
        if path == "/figures":
            return {"rows": [asdict(row) for row in store.figures(analytics_query_of(body))]}
        if path == "/insert":
            facts = [RequestMetered.from_data(data) for data in body["facts"]]
            if body.get("recover"):
                store.recover_batch(facts, body["batch_id"])
            else:
                store.insert_usage(facts, body.get("batch_id"))
            return {}
        if path == "/delete_since":
            moment = body["moment"]
            store.delete_since(None if moment is None else datetime.fromisoformat(moment))
            return {}
        if path == "/count":
            return {"count": store.count_usage()}
        if path == "/schema":
            store.ensure_schema()
            return {"rollup_timezone": getattr(store, "rollup_timezone", "UTC")}
        raise KeyError(f"no such call {path!r}; the calls are /usage, /recent, /figures, /insert, "
                       "/delete_since, /count, /schema")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per query is noise; failures are logged above


class AnalyticsServer:
    """Serves `store` on the unix socket `path` from threads of its own, until `stop()`."""

    def __init__(self, store: AnalyticsStore, path: Path) -> None:
        self.store = store
        self.path = Path(path)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> AnalyticsServer:
        # Only the store's owner serves it (chDB locks its directory), so a socket file left
        # here is a dead process's.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = os.umask(0o177)
        try:
            server = _Server(str(self.path), _Handler)
        finally:
            os.umask(previous)
        server.store = self.store
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="analytics-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> AnalyticsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
