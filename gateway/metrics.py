"""Prometheus text-format metrics, kept in plain counters (no I/O on the hot path)."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)
        self.cost: dict[str, int] = defaultdict(int)
        self.refusals: dict[str, int] = defaultdict(int)
        self.upstream_errors: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
        self.latency_sum: dict[str, float] = defaultdict(float)

    def observe_request(self, model: str, endpoint: str, status: int, latency_ms: float,
                        prompt_tokens: int, completion_tokens: int, cost: int) -> None:
        with self._lock:
            self.requests[(model, endpoint, status)] += 1
            self.tokens[(model, "prompt")] += prompt_tokens
            self.tokens[(model, "completion")] += completion_tokens
            self.cost[model] += cost
            buckets = self.latency[model]
            for i, bound in enumerate(LATENCY_BUCKETS_MS):
                if latency_ms <= bound:
                    buckets[i] += 1
                    break
            else:
                buckets[-1] += 1
            self.latency_sum[model] += latency_ms

    def refused(self, reason: str) -> None:
        with self._lock:
            self.refusals[reason] += 1

    def upstream_error(self, model: str, kind: str) -> None:
        with self._lock:
            self.upstream_errors[(model, kind)] += 1

    def render(self) -> str:
        with self._lock:
            out = ["# HELP meterline_requests_total Requests metered, by model, endpoint and status.",
                   "# TYPE meterline_requests_total counter"]
            out += [f'meterline_requests_total{{model="{m}",endpoint="{e}",status="{s}"}} {n}'
                    for (m, e, s), n in sorted(self.requests.items())]
            out += ["# HELP meterline_tokens_total Tokens metered, by model and kind.",
                    "# TYPE meterline_tokens_total counter"]
            out += [f'meterline_tokens_total{{model="{m}",kind="{k}"}} {n}'
                    for (m, k), n in sorted(self.tokens.items())]
            out += ["# HELP meterline_cost_nanos_total Metered cost in nano-units of the currency.",
                    "# TYPE meterline_cost_nanos_total counter"]
            out += [f'meterline_cost_nanos_total{{model="{m}"}} {n}' for m, n in sorted(self.cost.items())]
            out += ["# HELP meterline_refusals_total Requests refused before the upstream, by reason.",
                    "# TYPE meterline_refusals_total counter"]
            out += [f'meterline_refusals_total{{reason="{r}"}} {n}' for r, n in sorted(self.refusals.items())]
            out += ["# HELP meterline_upstream_errors_total Upstream failures, by model and kind.",
                    "# TYPE meterline_upstream_errors_total counter"]
            out += [f'meterline_upstream_errors_total{{model="{m}",kind="{k}"}} {n}'
                    for (m, k), n in sorted(self.upstream_errors.items())]
            out += ["# HELP meterline_request_latency_ms Gateway request latency in milliseconds.",
                    "# TYPE meterline_request_latency_ms histogram"]
            name = "meterline_request_latency_ms"
            for model, buckets in sorted(self.latency.items()):
                running = 0
                for bound, count in zip(LATENCY_BUCKETS_MS, buckets, strict=False):
                    running += count
                    out.append(f'{name}_bucket{{model="{model}",le="{bound}"}} {running}')
                running += buckets[-1]
                out.append(f'{name}_bucket{{model="{model}",le="+Inf"}} {running}')
                out.append(f'{name}_sum{{model="{model}"}} {self.latency_sum[model]:.3f}')
                out.append(f'{name}_count{{model="{model}"}} {running}')
            return "\n".join(out) + "\n"
