"""The id rule (domain.ids) and what the app's error handlers answer when a route fails."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from domain.ids import ID_MAX_LENGTH, ID_RULE, is_valid_id
from gateway.app import install_error_handlers


@pytest.mark.parametrize("good", ["alice", "john@acme.com", "john+bot@acme.com", "team-a", "a.b_c",
                                  "0", "A" * ID_MAX_LENGTH, "u-1f3a"])
def test_ids_of_letters_digits_and_dot_underscore_at_plus_dash_are_valid(good):
    assert is_valid_id(good)


@pytest.mark.parametrize("bad", ["", "x/y", "a\x00b", "evil\u202egnp", "a b", "alice\n", "\nalice",
                                 "-a", ".a", "_a", "@a", "ünï", "a" * (ID_MAX_LENGTH + 1), "a:b",
                                 "a%b", "a?b", "a\\b", "\uff41"])
def test_ids_with_anything_else_are_invalid(bad):
    assert not is_valid_id(bad)


def test_the_id_rule_says_the_length_and_the_characters():
    assert str(ID_MAX_LENGTH) in ID_RULE and "letters, digits" in ID_RULE


def test_an_unexpected_error_is_a_json_500_that_says_the_connection_closes():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in response.text


def test_a_validation_error_on_one_field_names_it_as_the_param():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/needs-int")
    async def needs_int(n: int) -> dict:
        return {"n": n}

    with TestClient(app) as client:
        error = client.get("/needs-int", params={"n": "x"}).json()["error"]
    assert error["param"] == "n" and error["code"] == "invalid_request"
