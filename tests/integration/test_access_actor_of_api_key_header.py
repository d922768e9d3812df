"""Access events name a caller who sent Anthropic's `x-api-key` header as they name one who sent
`Authorization: Bearer` (the Anthropic SDK sends only `x-api-key`)."""

from __future__ import annotations

from gateway.access_middleware import _authorization, caller
from tests.support.gateway import running_gateway, sim_config


def test_a_key_sent_as_x_api_key_is_the_actor_of_its_access_events(tmp_path) -> None:
    with running_gateway(tmp_path, sim_config("http://127.0.0.1:9/v1")) as gw:
        gw.setup_user("ana")
        key = gw.issue_key("ana")
        ctx = gw.system.ctx
        as_anthropic = {"headers": [(b"x-api-key", key["key"].encode())]}
        as_openai = {"headers": [(b"authorization", f"Bearer {key['key']}".encode())]}
        both = {"headers": [(b"x-api-key", b"sk-ml-unknown"), *as_openai["headers"]]}
        assert caller(ctx, _authorization(as_anthropic)) == caller(ctx, _authorization(as_openai))
        assert caller(ctx, _authorization(as_anthropic)).startswith("key:")
        assert caller(ctx, _authorization(both)).startswith("key:")  # Authorization wins, as on /v1
        assert caller(ctx, _authorization({"headers": []})) == "anonymous"
