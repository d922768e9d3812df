"""Signed webhooks against a real receiver on loopback: what is delivered, what is retried, what
is refused for good, how long a send may take, and the addresses a webhook is never sent to."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapters.notify.webhook import WebhookNotifier
from domain.ports.notifier import Notification, NotificationFailed
from domain.webhook_signature import HEADER, verify
from tests.support.gateway import free_port
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

SECRET = "whsec-webhook-tests-9f8e7d6c"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(SECRET) as running:
        yield running


@pytest.fixture
async def notifier() -> AsyncIterator[WebhookNotifier]:
    channel = WebhookNotifier(allow_private=True, timeout_s=1.0)
    yield channel
    await channel.aclose()


def hook(url: str, notification_id: str = "w-1", secret: str | None = SECRET) -> Notification:
    return Notification(notification_id, url, "Budget at 95 %", {"percent": 95}, signing_secret=secret)


async def test_the_event_is_a_signed_cloudevent_with_an_id_to_deduplicate_by(
        receiver: WebhookReceiver, notifier: WebhookNotifier) -> None:
    await notifier.notify(hook(receiver.url("/hooks/a"), "alert-7"))
    [delivery] = receiver.taken
    verify(SECRET, delivery.headers[HEADER], delivery.raw, time.time())
    assert delivery.headers["webhook-id"] == "alert-7"
    assert delivery.headers["Content-Type"].startswith("application/cloudevents+json")
    event = delivery.event
    assert {k: event[k] for k in ("specversion", "id", "source", "type", "subject", "datacontenttype")} == {
        "specversion": "1.0", "id": "alert-7", "source": "meterline", "type": "meterline.notification",
        "subject": "Budget at 95 %", "datacontenttype": "application/json"}
    assert abs(datetime.fromisoformat(event["time"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert event["data"] == {"percent": 95}


async def test_a_replayed_request_is_dropped_by_the_receiver(receiver: WebhookReceiver,
                                                             notifier: WebhookNotifier) -> None:
    await notifier.notify(hook(receiver.url("/hooks/a"), "alert-8"))
    [delivery] = receiver.taken
    async with httpx.AsyncClient() as client:
        again = await client.post(receiver.url("/hooks/a"), content=delivery.raw, headers=delivery.headers)
    assert again.status_code == 200 and receiver.replays == ["alert-8"] and len(receiver.taken) == 1


async def test_a_stale_timestamp_is_refused_by_the_receiver_and_that_is_permanent(
        receiver: WebhookReceiver) -> None:
    late = WebhookNotifier(allow_private=True, now=lambda: datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(NotificationFailed) as failed:
        await late.notify(hook(receiver.url("/hooks/a")))
    await late.aclose()
    assert failed.value.permanent and "400" in str(failed.value)
    assert receiver.taken == [] and "timestamp" in receiver.refused[0]


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: WebhookReceiver,
                                                         notifier: WebhookNotifier) -> None:
    with pytest.raises(NotificationFailed):
        await notifier.notify(hook(receiver.url("/hooks/a"), secret="someone-else"))
    assert receiver.taken == [] and "does not match" in receiver.refused[0]


async def test_a_notification_without_a_secret_fails_permanently_and_sends_nothing(
        receiver: WebhookReceiver, notifier: WebhookNotifier) -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(receiver.url("/hooks/a"), secret=None))
    assert failed.value.permanent and "no signing secret" in str(failed.value)
    assert receiver.hits == {}


@pytest.mark.parametrize(("status", "permanent"), [
    (500, False), (502, False), (503, False), (408, False), (429, False),
    (400, True), (401, True), (404, True), (410, True), (413, True)])
async def test_server_errors_and_throttling_are_transient_other_refusals_permanent(
        receiver: WebhookReceiver, notifier: WebhookNotifier, status: int, permanent: bool) -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(receiver.url(f"/status/{status}")))
    assert failed.value.permanent is permanent and str(status) in str(failed.value)
    assert len(str(failed.value)) < 300  # a 100 kB refusal is cut, not carried into the error


async def test_a_redirect_is_not_followed_and_fails_permanently(receiver: WebhookReceiver,
                                                               notifier: WebhookNotifier) -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(receiver.url("/status/302")))
    assert failed.value.permanent and "not followed" in str(failed.value)
    assert "/hooks/redirected" not in receiver.hits


async def test_a_slow_receiver_fails_within_the_timeout_and_is_transient(
        receiver: WebhookReceiver, notifier: WebhookNotifier) -> None:
    started = time.monotonic()
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(receiver.url("/slow")))
    assert time.monotonic() - started < 2.5
    assert not failed.value.permanent


async def test_a_refused_connection_is_transient(notifier: WebhookNotifier) -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(f"http://127.0.0.1:{free_port()}/hooks/a"))
    assert not failed.value.permanent


async def test_a_failed_send_is_tried_again_on_the_next_call(receiver: WebhookReceiver,
                                                             notifier: WebhookNotifier) -> None:
    # the id is remembered only once delivered: the alerts worker's retry must reach the wire
    with pytest.raises(NotificationFailed):
        await notifier.notify(hook(receiver.url("/status/503"), "retry-1"))
    with pytest.raises(NotificationFailed):
        await notifier.notify(hook(receiver.url("/status/503"), "retry-1"))
    assert receiver.hits["/status/503"] == 2


async def test_each_webhook_goes_on_a_new_connection(receiver: WebhookReceiver,
                                                    notifier: WebhookNotifier) -> None:
    # a kept-alive connection set up for one host name must not carry another's request
    for n in range(3):
        await notifier.notify(hook(receiver.url("/hooks/a"), f"k-{n}"))
    assert [d.headers["Connection"] for d in receiver.taken] == ["close"] * 3


async def test_errors_name_the_receivers_origin_not_the_token_in_its_path(notifier: WebhookNotifier) -> None:
    port = free_port()
    with pytest.raises(NotificationFailed) as failed:
        await notifier.notify(hook(f"http://127.0.0.1:{port}/services/T0/B0/sEcReTtOkEn?key=abc"))
    assert f"http://127.0.0.1:{port}" in str(failed.value)
    assert "sEcReTtOkEn" not in str(failed.value) and "key=abc" not in str(failed.value)
