"""In-app notices: one board per user, posted by the in-app channel, acknowledged by the user.

A board keeps its newest MAX_KEPT notices; older acknowledged ones are dropped from its state
(their events stay in the store), so a board loads in bounded time with its snapshots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import stable_id

MAX_KEPT = 200


class NoticeBoard(Aggregate):
    TOPIC = "meterline.NoticeBoard"

    class Created(Aggregate.Created):
        TOPIC = "meterline.NoticeBoard.Created"

    @staticmethod
    def id_for(user_id: str) -> UUID:
        return stable_id("alert-notices", user_id)

    @classmethod
    def create_id(cls, user_id: str, at: datetime) -> UUID:
        return cls.id_for(user_id)

    @event("NoticeBoardOpened", topic="meterline.NoticeBoardOpened")
    def __init__(self, user_id: str, at: datetime) -> None:
        self.user_id = user_id
        self.notices: dict[str, dict[str, Any]] = {}

    def post(self, notice_id: str, subject: str, text: str, data: dict[str, Any], at: datetime,
             type_: str = "meterline.alert.triggered") -> bool:
        """Posts a notice once; the same id again (a retried delivery) posts nothing."""
        if notice_id in self.notices:
            return False
        self._posted(notice_id=notice_id, subject=subject, text=text, data=data, notice_type=type_, at=at)
        return True

    def acknowledge(self, notice_id: str, at: datetime) -> bool:
        """Marks a notice read; False when this board has no such notice."""
        notice = self.notices.get(notice_id)
        if notice is None:
            return False
        if notice["acknowledged_at"] is None:
            self._acknowledged(notice_id=notice_id, at=at)
        return True

    def listing(self) -> list[dict[str, Any]]:
        """Unread first, then newest first within each."""
        ordered = sorted(self.notices.values(), key=lambda n: n["posted_at"], reverse=True)
        return sorted(ordered, key=lambda n: n["acknowledged_at"] is not None)

    @event("NoticePosted", topic="meterline.NoticePosted")
    def _posted(self, notice_id: str, subject: str, text: str, data: dict[str, Any], notice_type: str,
                at: datetime) -> None:
        self.notices[notice_id] = {"id": notice_id, "type": notice_type, "subject": subject, "text": text,
                                   "data": data, "posted_at": at.isoformat(), "acknowledged_at": None}
        if len(self.notices) > MAX_KEPT:
            read = [k for k, n in self.notices.items() if n["acknowledged_at"] is not None]
            for key in (read or list(self.notices))[: len(self.notices) - MAX_KEPT]:
                del self.notices[key]

    @event("NoticeAcknowledged", topic="meterline.NoticeAcknowledged")
    def _acknowledged(self, notice_id: str, at: datetime) -> None:
        self.notices[notice_id] = {**self.notices[notice_id], "acknowledged_at": at.isoformat()}
