"""Counters and a latency histogram in the Prometheus text format, for GET /metrics.

Deliberately tiny (a few numbers, no labels carrying personal data) so it needs no client library;
each process reports its own, as Prometheus expects.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

HELP = {
    "yibao_updates_total": "Updates handled (messages, button presses, web turns).",
    "yibao_estimates_total": "Estimates produced.",
    "yibao_errors_total": "Updates that failed with an error.",
    "yibao_throttled_total": "Updates dropped by the flood limit.",
    "yibao_redeliveries_total": "Updates delivered again and not applied again (idempotent turns).",
    "yibao_unavailable_total": "Updates answered 'busy' and left unacknowledged while Redis did not answer.",
}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self) -> str:
        lines = []
        for name, text in HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {self.counters.get(name, 0)}"]
        name = "yibao_update_seconds"
        lines += [f"# HELP {name} Time to handle one update.", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        lines += [f"{name}_sum {self.latency_sum:.6f}", f"{name}_count {self.latency_count}"]
        return "\n".join(lines) + "\n"
