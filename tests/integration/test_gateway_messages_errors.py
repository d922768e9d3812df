"""POST /v1/messages and /v1/messages/count_tokens refusing (issue 15): every error in
Anthropic's shape with its request id, as the Anthropic SDK's own exception classes; x-api-key
and missing max_tokens; count_tokens scoped and unbilled; the APIs each model speaks."""

from __future__ import annotations

import time

import anthropic
import pytest

from tests.support.api_models import (
    HI,
    anthropic_error,
    anthropic_sdk,
    message,
    new_key,
)
from tests.support.api_models import post_message as post
from tests.support.gateway import ADMIN_TOKEN

pytest_plugins = ["tests.support.api_gateway"]  # fixtures: sims, sim, gw

sdk = anthropic_sdk


# ----- errors in Anthropic's shape, as the SDK's exceptions ----------------------------------


def test_every_refusal_is_the_anthropic_sdks_own_exception(gw):
    key = new_key(gw, models=["sim"])
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gw, "sk-ml-unknown").messages.create(model="sim", max_tokens=2, messages=HI)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        sdk(gw, key).messages.create(model="sim-cache", max_tokens=2, messages=HI)
    assert "sim-cache" in str(denied.value)
    with pytest.raises(anthropic.NotFoundError):
        sdk(gw, new_key(gw)).messages.create(model="no-such-model", max_tokens=2, messages=HI)
    with pytest.raises(anthropic.BadRequestError):
        sdk(gw, key).messages.create(model="sim", max_tokens=0, messages=HI)
    poor = new_key(gw, budget_usd="0.00001", budget_mode="hard")
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk(gw, poor).messages.create(model="sim", max_tokens=64, messages=HI)
    assert limited.value.body["request_id"] == limited.value.response.headers["request-id"]
    with pytest.raises(anthropic.APIStatusError) as failed:
        sdk(gw, new_key(gw)).messages.create(model="sim-fails", max_tokens=2, messages=HI)
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize(("key", "status", "kind"), [
    (None, 401, "authentication_error"), ("sk-ml-wrong", 401, "authentication_error")])
def test_a_missing_or_unknown_key_is_an_authentication_error(gw, key, status, kind):
    response = post(gw, {"key": key} if key else None, message())
    anthropic_error(response, status, kind)


def test_a_missing_max_tokens_is_a_clear_400(gw, sim):
    calls = sim.app.requests
    body = anthropic_error(post(gw, new_key(gw), {"model": "sim", "messages": HI}), 400,
                           "invalid_request_error")
    assert "max_tokens" in body["error"]["message"] and sim.app.requests == calls


def test_a_model_whose_upstream_does_not_speak_messages_is_a_400_naming_what_it_offers(gw):
    body = anthropic_error(post(gw, new_key(gw), message("sim-chat")), 400, "invalid_request_error")
    assert "'sim-chat'" in body["error"]["message"] and "/v1/chat/completions" in body["error"]["message"]


def test_the_rpm_limit_is_a_rate_limit_error_with_retry_after(gw):
    key = new_key(gw, rpm_limit=1)
    assert post(gw, key, message()).status_code == 200
    response = post(gw, key, message())
    anthropic_error(response, 429, "rate_limit_error")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("body", [
    {"model": "sim", "max_tokens": 4},
    {"model": "sim", "max_tokens": 4, "messages": "hi"},
    {"model": "sim", "max_tokens": 4, "messages": ["hi"]},
    {"model": "sim", "max_tokens": "4", "messages": HI},
    {"model": "sim", "max_tokens": 4, "messages": HI, "system": 5},
    {"model": "sim", "max_tokens": 4, "messages": HI, "tools": "f"},
    {"model": "sim", "max_tokens": 4, "messages": HI, "stream": 1},
    {"max_tokens": 4, "messages": HI},
])
def test_a_malformed_request_is_a_400_that_never_reaches_the_model_server(gw, sim, body):
    calls = sim.app.requests
    anthropic_error(post(gw, new_key(gw), body), 400, "invalid_request_error")
    assert sim.app.requests == calls


def test_count_tokens_is_forwarded_scoped_and_not_billed(gw, sim):
    key = new_key(gw, models=["sim"])
    response = post(gw, key, {"model": "sim", "messages": HI}, "/messages/count_tokens")
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    anthropic_error(post(gw, key, {"model": "sim-cache", "messages": HI}, "/messages/count_tokens"),
                    403, "permission_error")
    anthropic_error(post(gw, None, {"model": "sim", "messages": HI}, "/messages/count_tokens"),
                    401, "authentication_error")
    time.sleep(0.2)
    assert gw.metered(key["id"]) == []


def test_the_models_list_shows_the_apis_each_model_speaks(gw):
    with gw.client(new_key(gw)["key"]) as client:
        models = {m["id"]: m["apis"] for m in client.get("/v1/models").json()["data"]}
    assert "messages" in models["sim"] and "responses" in models["sim"]
    assert models["sim-chat"] == ["chat", "completions", "embeddings"]
    with gw.client(ADMIN_TOKEN) as admin:
        assert admin.get("/v1/models").status_code == 401  # an admin token is not an API key
    listed = sdk(gw, new_key(gw, models=["sim"])).models.list().data
    assert [(m.id, m.type, m.display_name) for m in listed] == [("sim", "model", "sim")]
