"""Stop signals, for the single process and the supervisor alike: the first SIGTERM/SIGINT stops
gracefully, a second at once (exit code 130), and a process that still hangs after that is ended."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("conveyor.processor")
EXIT_HARD_STOP = 130
HARD_STOP_SECONDS = 2.0  # after a second signal, the longest the process lives on


def on_two_signals(graceful: Callable[[], None], at_once: Callable[[], None], last_resort: Callable[[], None]) -> None:
    """SIGTERM/SIGINT: the first calls ``graceful``, a second ``at_once``; ``HARD_STOP_SECONDS`` after
    that, ``last_resort`` ends the process from a thread, not from the event loop (which may be what
    hangs: an SQS call under way, a blocked handler)."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("signal_received", action="graceful stop")
            graceful()
            return
        log.warning("signal_received", action="stop at once")
        at_once()
        timer = threading.Timer(HARD_STOP_SECONDS, last_resort)
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
