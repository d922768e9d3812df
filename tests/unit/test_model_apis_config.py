"""A model's APIs, its upstream's state and its cache-write and reasoning prices in the
configuration file (issue 15): defaults, exact values, and errors a user can act on."""

from __future__ import annotations

import pytest

from infra.config.errors import ConfigError
from infra.config.toml_file import DEFAULT_APIS, parse_config
from infra.container import routes_of

MODEL = """
[[models]]
name = "m"
upstream_url = "http://127.0.0.1:8081/v1"
input_price_per_million = "1"
output_price_per_million = "2"
"""


def test_a_model_speaks_chat_completions_and_embeddings_unless_it_says_more():
    [model] = parse_config(MODEL).models
    assert model.apis == DEFAULT_APIS and not model.upstream_keeps_state
    assert routes_of(parse_config(MODEL))["m"].apis == frozenset(DEFAULT_APIS)


def test_apis_state_and_the_new_prices_are_read_exactly():
    [model] = parse_config(MODEL + 'apis = ["messages", "responses", "messages"]\n'
                           'upstream_keeps_state = true\n'
                           'cache_write_price_per_million = "1.25"\n'
                           'reasoning_price_per_million = "3.000000001"\n').models
    assert model.apis == ("messages", "responses") and model.upstream_keeps_state
    assert (model.cache_write_per_million, model.reasoning_per_million) == (1_250_000_000, 3_000_000_001)
    route = routes_of(parse_config(MODEL + 'apis = ["responses"]\nupstream_keeps_state = true\n'))["m"]
    assert route.apis == frozenset({"responses"}) and route.keeps_state


@pytest.mark.parametrize(("line", "says"), [
    ('apis = ["chat", "anthropic"]', "unknown api 'anthropic'; use one of chat, completions, embeddings"),
    ("apis = []", "apis"),
    ('apis = "chat"', "apis"),
    ('upstream_keeps_state = "yes"', "upstream_keeps_state"),
])
def test_a_wrong_apis_or_state_entry_is_an_error_naming_it(line, says):
    with pytest.raises(ConfigError) as caught:
        parse_config(MODEL + line + "\n")
    assert says in str(caught.value)
