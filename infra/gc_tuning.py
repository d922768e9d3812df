"""The cyclic garbage collector, tuned for a long-running server process.

Measured on `meterline up` (docs/benchmarks.md, issue 10): during 2,000 concurrent streams the
gateway spent about half of its CPU in the collector, with single pauses of 0.24-0.30 s, since
every full collection walked each of the ~130,000 objects the process made while starting (the
web app, the views, the stores' mappers), none of which ever becomes garbage. So once a process
has started, its heap is collected once and frozen out of the collector's walks (`gc.freeze`),
and young objects are collected every 10,000 allocations instead of 700: a request makes a few
hundred, so most of them are freed by reference counting before any walk. Cyclic garbage is
still collected; the collections are rarer and walk less.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # CPython's default is 700


def freeze_startup_heap() -> None:
    """Call once the process has started (stores open, views loaded), before it serves."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
