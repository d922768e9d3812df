"""Invariants 5 and 6: no key secret, user token, prompt or completion is stored anywhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, running_gateway, sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


def chat(url: str, secret: str, content: str, **body) -> httpx.Response:
    return httpx.post(url + "/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": "sim", "messages": [{"role": "user", "content": content}], **body})


def files_containing(root: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which of the needles occur in which file under root (every byte, any format)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def test_no_secret_and_no_prompt_or_completion_text_is_stored_anywhere(sim, tmp_path):
    marker = f"PROMPT-MARKER-{uuid.uuid4().hex}"
    data_dir = tmp_path / "data"
    with running_gateway(data_dir, sim_config(sim.base_url), roles=ALL_ROLES) as gw:
        token = gw.setup_user("frank")
        key = gw.issue_key("frank")
        with gw.client(ADMIN_TOKEN) as admin:
            rotated = admin.post(f"/api/keys/{key['id']}/rotate", json={"grace_seconds": 60}).json()
        answered = chat(gw.v1, key["key"], marker, max_tokens=8)
        assert answered.status_code == 200
        completion = answered.json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", gw.v1 + "/chat/completions",
                          headers={"authorization": f"Bearer {rotated['key']}"},
                          json={"model": "sim", "stream": True, "max_tokens": 8,
                                "messages": [{"role": "system", "content": marker},
                                             {"role": "user", "content": [{"type": "text", "text": marker}]}]}
                          ) as streamed:
            assert streamed.status_code == 200
            assert '"content":" ipsum"' in "".join(streamed.iter_text())
        auth = {"authorization": f"Bearer {rotated['key']}"}
        assert httpx.post(gw.v1 + "/completions", headers=auth,
                          json={"model": "sim", "prompt": marker, "max_tokens": 8}).status_code == 200
        assert httpx.post(gw.v1 + "/embeddings", headers=auth,
                          json={"model": "sim-embed", "input": [marker, marker]}).status_code == 200
        facts = gw.wait_metered(key["id"], 4)
        assert len(facts) == 4
    assert len(completion) > 30  # the simulator's answer, which must not be stored either
    needles = {"prompt": marker.encode(), "completion": completion.encode(),
               "key secret": key["key"].encode(), "rotated secret": rotated["key"].encode(),
               "user token": token.encode()}
    stored = files_containing(data_dir, {**needles, "key id": key["id"].encode()})
    assert stored.pop("key id"), "the scan must see the stores (the key id is recorded there)"
    assert any(name.endswith(".sqlite") for name in (str(p) for p in data_dir.rglob("*")))
    assert (data_dir / "bus").exists()
    assert stored == {}
