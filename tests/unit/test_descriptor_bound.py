"""The connection cap a process can keep: never more than its open-file limit allows."""

from __future__ import annotations

import resource

import pytest

from infra import http_protocol
from infra.http_protocol import descriptor_bound


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict:
    state = {"soft": 1024, "hard": 1024, "raise_fails": False}

    def get(_: int) -> tuple[int, int]:
        return state["soft"], state["hard"]

    def set_(_: int, values: tuple[int, int]) -> None:
        if state["raise_fails"]:
            raise ValueError("not permitted")
        state["soft"], state["hard"] = values

    monkeypatch.setattr(http_protocol.resource, "getrlimit", get)
    monkeypatch.setattr(http_protocol.resource, "setrlimit", set_)
    return state


def test_a_cap_past_the_open_file_limit_is_lowered_to_what_it_allows(limits) -> None:
    assert descriptor_bound(4096) == (1024 - 128) // 2


def test_the_soft_limit_is_raised_to_the_hard_one_first(limits) -> None:
    limits["hard"] = 20_000
    assert descriptor_bound(4096) == 4096 and limits["soft"] == 20_000


def test_a_limit_that_cannot_be_raised_still_bounds_the_cap(limits) -> None:
    limits.update(hard=20_000, raise_fails=True)
    assert descriptor_bound(4096) == (1024 - 128) // 2


def test_an_unlimited_process_keeps_the_cap_asked_for(limits) -> None:
    limits.update(soft=resource.RLIM_INFINITY, hard=resource.RLIM_INFINITY)
    assert descriptor_bound(4096) == 4096
