"""The per-model bounds on images, audio, video and files: read from the file, carried to the route."""

from __future__ import annotations

import pytest

from infra.config.errors import ConfigError
from infra.config.toml_file import parse_config
from infra.container import routes_of

MODEL = """
[[models]]
name = "vision"
upstream_url = "http://127.0.0.1:8081/v1"
input_price_per_million = "0.10"
output_price_per_million = "0.40"
"""
FIELDS = ("max_image_tokens", "max_audio_tokens", "max_video_tokens", "max_file_tokens")


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def test_media_bounds_are_unset_unless_configured():
    route = routes_of(parse_config(MODEL))["vision"]
    assert [getattr(route, f) for f in FIELDS] == [None] * 4


def test_configured_media_bounds_reach_the_route_the_gateway_reserves_with():
    text = MODEL + "".join(f"{field} = {1000 * (i + 1)}\n" for i, field in enumerate(FIELDS))
    config = parse_config(text)
    route = routes_of(config)["vision"]
    assert [getattr(route, f) for f in FIELDS] == [1000, 2000, 3000, 4000]
    assert [getattr(config.models[0], f) for f in FIELDS] == [1000, 2000, 3000, 4000]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["0", "-5", '"1600"', "1.5", "true"])
def test_a_media_bound_that_is_not_a_positive_whole_number_names_the_field_and_shows_one(field, value):
    message = problems(MODEL + f"{field} = {value}\n")
    assert f"models[0].{field}" in message
    assert f"{field} = " in message.split(f"models[0].{field}", 1)[1]  # an example of a good value


def test_a_misspelt_media_bound_suggests_the_right_name():
    assert "did you mean 'max_image_tokens'" in problems(MODEL + "max_images_tokens = 1600\n")
