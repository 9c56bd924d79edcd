"""The continuous canary's Prometheus metrics (its own registry, served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from conveyor.canary.probe import STEPS, ProbeResult

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class CanaryMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.success = Counter("conveyor_canary_success", "Probes handled by a processor in time.", registry=r)
        self.failure = Counter(
            "conveyor_canary_failure",
            "Probes that failed, by step: post (refused or unreachable), handled (no reply in time), canary_queue.",
            ["step"],
            registry=r,
        )
        for step in STEPS:  # every series exists from the start, so rate() and alerts see zeros
            self.failure.labels(step)
        self.late = Counter(
            "conveyor_canary_late_replies", "Replies that came after their probe had given up.", registry=r
        )
        self.post_seconds = Histogram(
            "conveyor_canary_post_seconds", "POST /messages round trip.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.e2e_seconds = Histogram(
            "conveyor_canary_end_to_end_seconds",
            "From the 202 to the processor's reply reaching the canary.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "conveyor_canary_last_success_timestamp_seconds", "Unix time of the last successful probe.", registry=r
        )
        self.up = Gauge("conveyor_canary_up", "1 if the last probe succeeded, else 0.", registry=r)

    def observe(self, result: ProbeResult) -> None:
        if result.post_seconds is not None:
            self.post_seconds.observe(result.post_seconds)
        if result.ok:
            self.success.inc()
            self.e2e_seconds.observe(result.e2e_seconds or 0.0)
            self.last_success.set(result.at)
            self.up.set(1)
        else:
            self.failure.labels(result.step or "unknown").inc()
            self.up.set(0)
