"""The e-mail a notification becomes, and the notification read back from one.

multipart/mixed: a text/plain part a person reads (the body's text) and an application/json
part (`notification.json`) carrying the body as it was, so a program (or a test) rebuilds the
notification exactly. `Message-ID` derives from the notification id, so a receiving system
that de-duplicates by it drops a repeated send.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from adapters.notify.body import text_of, to_json
from domain.ports.notifier import Notification

ID_HEADER = "X-Meterline-Notification-Id"
JSON_PART = "notification.json"
# local@domain: no spaces, no quotes, no control characters, a dotted domain; what a mail
# server would refuse after a connection is refused here before one
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)"
                      r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_address(value: str) -> bool:
    """A plain ASCII `local@domain.tld` address (no display name, no comments). The whole value:
    `$` alone would let one trailing line feed through, into the To header."""
    return bool(_ADDRESS.fullmatch(value)) and ".." not in value


def build_message(notification: Notification, sender: str, now: datetime) -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    # a subject is one line: a newline in it would start a header of the sender's choosing
    message["Subject"] = " ".join(notification.subject.split())
    message["From"] = sender
    message["To"] = notification.recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(notification.notification_id, sender)
    message[ID_HEADER] = " ".join(notification.notification_id.split())
    message.set_content(text_of(notification), charset="utf-8", cte="quoted-printable")
    message.add_attachment(to_json(notification.body), maintype="application", subtype="json",
                           filename=JSON_PART)
    return message


def message_id(notification_id: str, sender: str) -> str:
    """`<id@sender-domain>`, the same for every send of one notification."""
    local = (notification_id if _SAFE_ID.match(notification_id)
             else hashlib.sha256(notification_id.encode()).hexdigest()[:40])
    return f"<meterline.{local}@{sender.rpartition('@')[2]}>"


def read_notification(message: EmailMessage) -> Notification:
    """The notification an e-mail built by `build_message` carries."""
    attached = next(part for part in message.iter_attachments() if part.get_filename() == JSON_PART)
    return Notification(notification_id=str(message[ID_HEADER]), recipient=str(message["To"]),
                        subject=str(message["Subject"]),
                        body=json.loads(attached.get_content()))
