"""The CloudEvents codec both buses share: exact round trips, clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.bus.cloudevents import decode, encode
from domain.ports.bus import BusMessage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
messages = st.builds(
    BusMessage,
    id=st.uuids().map(str), type=st.text(min_size=1), source=st.text(min_size=1),
    subject=st.text(), key=st.text(),
    time=st.datetimes(timezones=st.just(UTC)),
    data=st.dictionaries(st.text(), json_values, max_size=6),
    schema_version=st.integers(1, 1000),
    extensions=st.dictionaries(
        st.from_regex(r"x[a-z0-9]{0,19}", fullmatch=True), st.text(), max_size=3),
)


@given(messages)
def test_a_message_survives_encoding_exactly(sent: BusMessage) -> None:
    assert decode(encode(sent)) == sent


def test_an_encoded_message_is_a_cloudevent_with_utc_time() -> None:
    local = datetime(2025, 3, 1, 14, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    sent = BusMessage(id="e-1", type="meterline.request.metered", source="/gw/1",
                      subject="key-1", time=local, data={"n": 1}, key="key-1",
                      schema_version=2, extensions={"traceparent": "00-ab"})
    event = orjson.loads(encode(sent))
    assert event == {
        "specversion": "1.0", "id": "e-1", "type": "meterline.request.metered",
        "source": "/gw/1", "subject": "key-1", "time": "2025-03-01T12:30:00.250000Z",
        "datacontenttype": "application/json", "dataschemaversion": 2,
        "partitionkey": "key-1", "traceparent": "00-ab", "data": {"n": 1},
    }
    assert decode(encode(sent)).time.tzinfo is UTC


def test_a_cloudevent_without_partitionkey_takes_the_given_key() -> None:
    raw = orjson.dumps({"specversion": "1.0", "id": "e-1", "type": "t", "source": "/s",
                        "subject": "s", "time": "2025-01-01T00:00:00Z", "data": {}})
    assert decode(raw, key="record-key").key == "record-key"


@pytest.mark.parametrize(("raw", "complaint"), [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"specversion": "0.3"}', "specversion is '0.3'"),
    (b'{"specversion": "1.0", "id": "e-1"}', "lacks source, type, subject, time, data"),
    (b'{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s",'
     b' "time": "yesterday", "data": {}, "partitionkey": "k"}', "time 'yesterday' is not RFC"),
    (b'{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s",'
     b' "time": "2025-01-01T00:00:00", "data": {}, "partitionkey": "k"}', "has no UTC offset"),
    (b'{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s",'
     b' "time": "2025-01-01T00:00:00Z", "data": "text", "partitionkey": "k"}',
     "data must be a JSON object"),
    (b'{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s",'
     b' "time": "2025-01-01T00:00:00Z", "data": {}}', "no partitionkey"),
    (b'{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s",'
     b' "time": "2025-01-01T00:00:00Z", "data": {}, "partitionkey": "k", "x": 1}',
     "extension 'x' must be a string"),
])
def test_bad_bytes_are_refused_naming_what_is_wrong(raw: bytes, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        decode(raw)


def test_a_naive_time_or_a_reserved_extension_is_refused_at_encoding() -> None:
    base = dict(id="e", type="t", source="s", subject="s", data={}, key="k")
    with pytest.raises(ValueError, match="timezone-aware"):
        encode(BusMessage(time=datetime(2025, 1, 1), **base))
    with pytest.raises(ValueError, match="not a usable extension name"):
        encode(BusMessage(time=datetime.now(UTC), extensions={"subject": "x"}, **base))
