"""The demo set-up of `make run`: the bundled Gemma 3 270M model server and its config."""

from __future__ import annotations

from pathlib import Path

from infra.config.toml_file import MeterlineConfig, parse_config

DEMO_TOML = """
[[models]]
name = "gemma-3-270m"
upstream_url = "{url}"
upstream_model = "gemma"
input_price_per_million = "0.10"
output_price_per_million = "0.40"
max_output_tokens = 256
gpu_cost_per_hour = "0.20"
stop = ["\\nQuestion:"]
# llama.cpp serves OpenAI's Responses and Anthropic's Messages beside chat (issue 15)
apis = ["chat", "completions", "embeddings", "responses", "messages"]

[[models]]
name = "gemma-3-270m-embed"
upstream_url = "{url}"
upstream_model = "gemma"
kind = "embedding"
input_price_per_million = "0.02"
output_price_per_million = "0"
"""


def demo_config(base_url: str) -> MeterlineConfig:
    return parse_config(DEMO_TOML.format(url=base_url), source="<demo config>")


def start_demo_model(data_dir: Path):  # -> DemoModelServer
    """Starts the real model server (about a second) with its file cached in the data dir."""
    from infra.demo.model_server import DemoModelServer
    server = DemoModelServer(cache_dir=data_dir / "models", log_path=data_dir / "demo-model.log")
    data_dir.mkdir(parents=True, exist_ok=True)
    return server.start()
