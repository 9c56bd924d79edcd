"""Benchmarks (not tests): Conveyor and naive baselines side by side (`python -m bench.run`), the
results history (bench/results.jsonl), the CI gate (`bench.gate`), the quality report
(`bench.report`) and the comparison of two commits (`bench.compare`). See docs/benchmarks.md."""
