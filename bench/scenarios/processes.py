"""Processor benchmark, CPU-bound: one engine process against two (``CONVEYOR_PROCESSES``).

    .venv/bin/python -m bench.scenarios.processes [--processes 1 2] [--messages 2000] [--repeat 1]

For each count of processes: preload the messages, drain them with ``bench.handlers:cpu`` (about
10 ms of CPU in the interpreter per message), and measure in the steady state (between 10% and 90%
of completions, read from the one ``/metrics``): drained msg/s; the CPU of the processor (the
supervisor and its children) and of LocalStack, per message and in cores; the handler's own time
per message (``conveyor_processor_handler_seconds``: it grows when the handler waits for a core);
and the cores the rest of the machine used meanwhile (the machine is shared: whatever else runs).
Then the ratio of two processes to one, measured, and what it would be with the cores to the
processor alone (each process's CPU per message, without the emulator on the same two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.handlers import CPU_ROUNDS, burn
from bench.scenarios.processor import preload
from bench.services import CLOCK_TICKS, REPO, create_queues, free_port, localstack, process_cpu_seconds, script, service

POLL_SECONDS = 0.2  # reading /metrics costs the supervisor CPU too: not too often


@dataclass(frozen=True)
class Mark:
    at: float
    done: float
    processor_cpu: float
    localstack_cpu: float
    handler_seconds: float
    machine_cpu: float  # every core's busy time, from /proc/stat
    own_cpu: float  # this benchmark's


def machine_cpu_seconds() -> float:
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def handler_cpu_ms() -> float:
    """The handler's CPU on this machine, best of 20 calls in this process."""
    best = float("inf")
    for _ in range(20):
        started = time.process_time()
        burn(CPU_ROUNDS)
        best = min(best, time.process_time() - started)
    return 1000 * best


def run_once(endpoint: str, stack_pid: int, processes: int, messages: int) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    url = create_queues(endpoint, name)
    preload(endpoint, url, messages)
    port = free_port()
    env = {
        **os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_SQS_ENDPOINT_URL": endpoint, "CONVEYOR_QUEUE_NAME": name,
        "CONVEYOR_HANDLER": "bench.handlers:cpu", "CONVEYOR_PROCESSES": str(processes),
        "CONVEYOR_CONCURRENCY": "10", "CONVEYOR_PROCESSOR_PORT": str(port), "CONVEYOR_LOG_LEVEL": "warning",
    }  # fmt: skip
    marks: list[Mark] = []
    with service(script("queue-processor"), env, port, "/readyz") as processor:
        while True:
            samples = processor.metrics()
            done = samples.get("conveyor_processor_succeeded_total", 0.0)
            handler_seconds = samples.get("conveyor_processor_handler_seconds_sum", 0.0)
            marks.append(
                Mark(
                    time.monotonic(), done, processor.cpu_seconds(), process_cpu_seconds(stack_pid, tree=True),
                    handler_seconds, machine_cpu_seconds(), time.process_time(),
                )
            )  # fmt: skip
            if done >= messages:
                break
            time.sleep(POLL_SECONDS)
    first = next(m for m in marks if m.done >= messages * 0.1)
    last = next(m for m in marks if m.done >= messages * 0.9)
    seconds, handled = last.at - first.at, last.done - first.done
    processor_cpu, stack_cpu = last.processor_cpu - first.processor_cpu, last.localstack_cpu - first.localstack_cpu
    others = (last.machine_cpu - first.machine_cpu) - processor_cpu - stack_cpu - (last.own_cpu - first.own_cpu)
    return {
        "processes": processes,
        "messages": messages,
        "throughput_msg_s": round(handled / seconds, 1),
        "processor_cpu_ms_per_message": round(1000 * processor_cpu / handled, 2),
        "processor_cores": round(processor_cpu / seconds, 2),
        "localstack_cpu_ms_per_message": round(1000 * stack_cpu / handled, 2),
        "localstack_cores": round(stack_cpu / seconds, 2),
        "other_cores": round(others / seconds, 2),
        "handler_ms_per_message": round(1000 * (last.handler_seconds - first.handler_seconds) / handled, 2),
        # msg/s if each process had a core of its own and SQS cost nothing here
        "ceiling_msg_s": round(processes * handled / processor_cpu, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each count, alternating")
    parser.add_argument("--gateway-server", default="twisted", choices=["twisted", "hypercorn"])
    args = parser.parse_args(argv)
    print(f"# LocalStack gateway server: {args.gateway_server}; cores: {os.cpu_count()}")
    print(json.dumps({"handler_cpu_ms": round(handler_cpu_ms(), 2), "rounds": CPU_ROUNDS}), flush=True)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in args.processes}
    with localstack(args.gateway_server) as stack:
        for _ in range(args.repeat):
            for processes in args.processes:
                result = run_once(stack.endpoint, stack.process.pid, processes, args.messages)
                results[processes].append(result)
                print(json.dumps(result), flush=True)
    if 1 in results and 2 in results:
        best = {n: max(results[n], key=lambda r: r["throughput_msg_s"]) for n in (1, 2)}
        print(json.dumps({
            "ratio_2_to_1": round(best[2]["throughput_msg_s"] / best[1]["throughput_msg_s"], 2),
            "ceiling_ratio_2_to_1": round(best[2]["ceiling_msg_s"] / best[1]["ceiling_msg_s"], 2),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
