"""No input makes the gateway fail with a 5xx: schemathesis over its own OpenAPI, hypothesis junk on /v1.

The /v1 operations are called with an API key that may use every model, everything else with
the admin token, so generated requests get past authentication into the handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})
OWNER = f"owner-{uuid.uuid4().hex}"  # a user id the fuzzer will not offboard by chance
JUNK = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-bad-input"),
                                                   sim_config(sim.base_url), roles=ROLES) as gateway:
        gateway.setup_user(OWNER)
        yield gateway


@pytest.fixture(scope="module")
def api_key(gw: RunningGateway) -> str:
    return gw.issue_key(OWNER, models=["*"])["key"]


@pytest.fixture(scope="module")
def v1(gw: RunningGateway, api_key: str) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    with httpx.Client(base_url=gw.v1, headers=headers, timeout=30) as client:
        yield client


# Examples per operation and mode. Valid requests reach the handlers' logic, so they keep 30;
# invalid ones mostly end in the same request validation (a 422), and their time is generation:
# schemathesis drafts ~10 negative cases for each it sends. 30 took ~40 s of the run; 15 still
# send ~570 malformed requests over the ~70 operations (some have nothing to make invalid).
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}


def fuzz(operation, mode: GenerationMode, base_url: str, token: str) -> None:
    """Calls one operation with EXAMPLES[mode] generated requests; raises on the first 5xx (shrunk)."""
    session = requests.Session()  # one connection pool, not one per request

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(base_url=base_url, session=session, timeout=30,
                             headers={"authorization": f"Bearer {token}"})
        case.validate_response(response, checks=[not_a_server_error])

    with session:
        check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_with_a_server_error(gw, api_key, mode):
    # The schemathesis pytest loader (from_fixture) needs a pytest internal that pytest 9
    # removed, so each operation's strategy is driven with hypothesis directly.
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every route is in the schema, /v1 and management alike
    for operation in operations:
        token = api_key if operation.path.startswith("/v1") else ADMIN_TOKEN
        try:
            fuzz(operation, mode, gw.url, token)
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
        except Exception as exc:  # collect them all: one report names every failing operation
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())


# ----- hypothesis: junk bodies on /v1 ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                 st.text(max_size=10), st.lists(json_values, max_size=3),
                 st.dictionaries(st.text(max_size=6), json_values, max_size=3))
VALID = {"/chat/completions": {"model": "sim", "max_tokens": 4,
                               "messages": [{"role": "user", "content": "hi"}]},
         "/completions": {"model": "sim", "max_tokens": 4, "prompt": "hi"},
         "/embeddings": {"model": "sim-embed", "input": ["hi", "there"]}}
FIELDS = {"/chat/completions": ("model", "messages", "max_tokens", "max_completion_tokens", "stream",
                                "stream_options", "stop", "n", "tools"),
          "/completions": ("model", "prompt", "max_tokens", "stream", "stream_options", "stop", "n"),
          "/embeddings": ("model", "input", "stream", "encoding_format")}
# Not "dimensions": it passes through, and the simulator (no hardened server) would build a
# vector of any size asked for, 2**62 floats included, until the test run is out of memory.


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict]:
    """A valid request with one or two of its fields dropped or replaced by junk."""
    path = draw(st.sampled_from(sorted(VALID)))
    body = dict(VALID[path])
    if path != "/embeddings" and draw(st.booleans()):
        body["stream"] = True
    for field in draw(st.lists(st.sampled_from(FIELDS[path]), min_size=1, max_size=2, unique=True)):
        if field in body and draw(st.integers(0, 3)) == 0:
            del body[field]
        else:
            body[field] = draw(junk)
    return path, body


ENDPOINTS = st.sampled_from(["/chat/completions", "/completions", "/embeddings"])


def assert_no_server_error(response: httpx.Response, raw: bytes) -> None:
    assert response.status_code < 500, (response.status_code, raw[:300], response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert {"message", "type", "code"} <= set(body["error"]), body
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.endswith("data: [DONE]\n\n") or '"error"' in response.text
    else:
        assert response.json()["object"] in ("chat.completion", "text_completion", "list")


def send(v1: httpx.Client, path: str, raw: bytes) -> None:
    assert_no_server_error(v1.post(path, content=raw), raw)


@JUNK
@given(path=ENDPOINTS, raw=st.binary(max_size=300))
def test_random_bytes_are_refused_in_openai_shape(v1, path, raw):
    send(v1, path, raw)


@JUNK
@given(path=ENDPOINTS, value=json_values)
def test_random_json_values_are_refused_in_openai_shape(v1, path, value):
    send(v1, path, orjson.dumps(value))


@JUNK
@given(request=mutated())
def test_requests_with_fields_of_the_wrong_type_never_cause_a_server_error(v1, request):
    path, body = request
    send(v1, path, orjson.dumps(body))
