"""Request tags from the x-meterline-tags header and OpenAI's `metadata` and `user` fields."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.v1.tags import MAX_TAGS, tags_of


def test_a_request_without_tags_has_none() -> None:
    assert tags_of(None, {"model": "m"}) == {}


def test_header_tags_metadata_and_user_are_merged_the_header_winning() -> None:
    tags = tags_of("app=canopy, env=prod", {"metadata": {"app": "other", "Team Name": "Forschung ✓"},
                                            "user": "user-42"})
    assert tags == {"app": "canopy", "env": "prod", "Team Name": "Forschung ✓", "end_user": "user-42"}


@pytest.mark.parametrize(("header", "payload", "param"), [
    ("app", {}, "x-meterline-tags"),
    ("App=x", {}, "x-meterline-tags"),
    ("9app=x", {}, "x-meterline-tags"),
    ("app=", {}, "x-meterline-tags"),
    ("app=" + "x" * 129, {}, "x-meterline-tags"),
    ("app=a\u202eb", {}, "x-meterline-tags"),
    (None, {"metadata": ["app"]}, "metadata"),
    (None, {"metadata": {"app": 3}}, "metadata"),
    (None, {"metadata": {"k" * 65: "v"}}, "metadata"),
    (None, {"metadata": {"app": "x\x00y"}}, "metadata"),
    (None, {"user": 42}, "user"),
    (None, {"user": ""}, "user"),
    (None, {"metadata": {f"k{i}": "v" for i in range(MAX_TAGS + 1)}}, "metadata"),
])
def test_malformed_tags_are_a_400_naming_where_they_came_from(header, payload, param) -> None:
    with pytest.raises(GatewayError) as refused:
        tags_of(header, payload)
    assert (refused.value.status, refused.value.code, refused.value.param) == (400, "invalid_tags", param)


def test_empty_items_in_the_header_are_passed_over() -> None:
    assert tags_of(" app=canopy ,, ", {}) == {"app": "canopy"}
