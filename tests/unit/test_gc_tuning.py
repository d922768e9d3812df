"""A started process freezes its start-up heap out of the collector's walks and collects young
objects every 10,000 allocations (infra/gc_tuning.py; the measurement is in docs/benchmarks.md)."""

from __future__ import annotations

import gc

from infra.gc_tuning import YOUNG_THRESHOLD, freeze_startup_heap


def test_the_start_up_heap_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        made_at_start = [{"n": n} for n in range(1000)]
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(made_at_start)
        assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
        cycle: list = []
        cycle.append(cycle)  # garbage made after start is still collected
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
