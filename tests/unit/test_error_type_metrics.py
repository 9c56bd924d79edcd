"""The failed and dead-lettered counts by error type: what an operator filters on, and bounded."""

from __future__ import annotations

from prometheus_client import generate_latest

from conveyor import Retry, Throttle
from conveyor.processor.metrics import MAX_ERROR_TYPES, OTHER_ERROR_TYPE, ErrorTypes, ProcessorMetrics


class CardDeclinedError(Exception):
    pass


def value(metrics: ProcessorMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_retry_and_a_dead_letter_are_counted_by_the_qualified_class_name() -> None:
    metrics = ProcessorMetrics()
    metrics.count_retry(CardDeclinedError("declined"))
    metrics.count_dead_letter("exhausted", CardDeclinedError("declined"))
    kind = f"{__name__}.CardDeclinedError"
    assert value(metrics, "conveyor_processor_failed_total", error_type=kind) == 2
    assert value(metrics, "conveyor_processor_retried_total") == 1
    assert value(metrics, "conveyor_processor_dead_lettered_total", reason="exhausted", error_type=kind) == 1


def test_a_retry_the_handler_asked_for_is_retried_not_failed() -> None:
    metrics = ProcessorMetrics()
    metrics.count_retry(Retry(after=5))
    metrics.count_retry(Throttle(after=1))
    assert value(metrics, "conveyor_processor_retried_total") == 2
    assert "conveyor_processor_failed_total{" not in generate_latest(metrics.registry).decode()


def test_error_types_past_the_cap_are_counted_as_other_so_the_series_stay_bounded() -> None:
    metrics = ProcessorMetrics()
    classes = [type(f"Made{n}Error", (Exception,), {}) for n in range(MAX_ERROR_TYPES + 15)]
    for made in classes:
        metrics.count_retry(made())
    exposition = generate_latest(metrics.registry).decode()
    series = [line for line in exposition.splitlines() if line.startswith("conveyor_processor_failed_total{")]
    assert len(series) == MAX_ERROR_TYPES + 1
    assert value(metrics, "conveyor_processor_failed_total", error_type=OTHER_ERROR_TYPE) == 15
    # a name seen before the cap was reached keeps its own series afterwards
    metrics.count_retry(classes[0]())
    assert value(metrics, "conveyor_processor_failed_total", error_type=f"{__name__}.Made0Error") == 2


def test_a_very_long_class_name_is_cut_not_refused() -> None:
    long_named = type("E" * 500, (Exception,), {})
    label = ErrorTypes().label(long_named())
    assert 0 < len(label) <= 200
