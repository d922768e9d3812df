"""A stream's first token goes out when the model sends it; only what ends the answer waits
for metering (issue 10: added time to first token)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from testkit.simulator.server import Simulator
from tests.support.gateway import running_gateway, sim_config

GAP_S = 0.4


def test_the_first_token_is_relayed_without_waiting_for_the_next(tmp_path: Path) -> None:
    with Simulator(port=0, chunk_delay_ms=GAP_S * 1000) as sim, running_gateway(
            tmp_path, sim_config(sim.base_url)) as gw:
        gw.setup_user("tia")
        key = gw.issue_key("tia")["key"]
        arrivals: list[tuple[float, str]] = []
        started = time.monotonic()
        with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": "sim", "stream": True, "max_tokens": 3,
                                "messages": [{"role": "user", "content": "hi"}]}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append((time.monotonic() - started, line))
    content = [at for at, line in arrivals if '"content":"' in line and '"content":""' not in line]
    finish = next(at for at, line in arrivals if '"finish_reason":"' in line)
    # The simulator sends a chunk every GAP_S, the role first, so the first token leaves it at
    # 2 gaps; holding each chunk back until the next would deliver it at 3.
    assert content[0] < 2.5 * GAP_S, arrivals
    assert content[1] - content[0] > GAP_S / 2, arrivals  # relayed as they came, not in a burst
    assert arrivals[-1][1] == "data: [DONE]" and finish <= arrivals[-1][0]
