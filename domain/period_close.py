"""A closed billing month: its sealed figures and export files, which never change afterwards.

Closing a month records `PeriodClosed` with a manifest (what was sealed: requests, totals per
group, the SHA-256 of each export, the price versions in force) and one `ExportSealed` per file,
holding its bytes. Exports of a closed month are served from these bytes, so they stay
byte-identical through later traffic, price changes, a full rebuild of the analytics store,
and upgrades of the libraries that render them. Usage of a closed month that arrives late is
not added to it; reports book it as an adjustment in the next open month.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError
from domain.ids import stable_id

# ASCII digits only: a close's id is derived from the text, and \d also matches other scripts'
# digits ("٢٠٢٦-03"), which would be a second close of one month
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def check_month(month: str) -> str:
    if not isinstance(month, str) or not MONTH.fullmatch(month):
        raise DomainError(f"month {month!r} must be YYYY-MM in ASCII digits, e.g. 2026-03")
    return month


class PeriodClose(Aggregate):
    """One month's close. Its id is derived from the month, so a month closes once: a second
    close (another process, a retried command) is refused by the store."""

    TOPIC = "meterline.PeriodClose"

    class Created(Aggregate.Created):
        TOPIC = "meterline.PeriodClose.Created"

    @staticmethod
    def id_for(month: str) -> UUID:
        return stable_id("period-close", check_month(month))

    @classmethod
    def create_id(cls, month: str, closed_at: datetime, closed_by: str, manifest: dict[str, Any]) -> UUID:
        return cls.id_for(month)

    @event("PeriodClosed", topic="meterline.PeriodClosed")
    def __init__(self, month: str, closed_at: datetime, closed_by: str, manifest: dict[str, Any]) -> None:
        self.month = month
        self.closed_at = closed_at
        self.closed_by = closed_by
        self.manifest = manifest


class SealedExport(Aggregate):
    """The bytes of one export of a closed month (e.g. the chargeback by team as CSV)."""

    TOPIC = "meterline.SealedExport"

    class Created(Aggregate.Created):
        TOPIC = "meterline.SealedExport.Created"

    @staticmethod
    def id_for(month: str, name: str) -> UUID:
        return stable_id("sealed-export", check_month(month), name)

    @classmethod
    def create_id(cls, month: str, name: str, sha256: str, content: str) -> UUID:
        return cls.id_for(month, name)

    @event("ExportSealed", topic="meterline.ExportSealed")
    def __init__(self, month: str, name: str, sha256: str, content: str) -> None:
        self.month = month
        self.name = name
        self.sha256 = sha256
        self.content = content  # base64: the store's JSON carries text

    @classmethod
    def of(cls, month: str, name: str, data: bytes) -> SealedExport:
        return cls(month=month, name=name, sha256=hashlib.sha256(data).hexdigest(),
                   content=base64.b64encode(data).decode())

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.content)
