"""The receiver docs/webhooks.md tells customers to copy accepts what Meterline signs and refuses
what it should: the example is run, not only read."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from domain.webhook_signature import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec-docs-1f2e3d4c"


def copied_receiver() -> dict:
    first_python = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert first_python, "docs/webhooks.md lost its Python example"
    names: dict = {}
    exec(first_python.group(1), names)  # noqa: S102 - our own documentation's example
    return names


def test_the_documented_receiver_accepts_a_request_meterline_signed() -> None:
    body = b'{"specversion":"1.0","id":"n-1"}'
    copied_receiver()["verify_meterline_webhook"](SECRET, sign(SECRET, int(time.time()), body), body)


@pytest.mark.parametrize("change", ["body", "secret", "stale", "header"])
def test_the_documented_receiver_refuses_a_changed_stale_or_garbled_request(change: str) -> None:
    receiver = copied_receiver()
    body, t = b'{"id":"n-1"}', int(time.time()) - (600 if change == "stale" else 0)
    header = "t=abc" if change == "header" else sign(SECRET, t, body)
    with pytest.raises(receiver["BadSignature"]):
        receiver["verify_meterline_webhook"]("other" if change == "secret" else SECRET, header,
                                             body + (b" " if change == "body" else b""))
