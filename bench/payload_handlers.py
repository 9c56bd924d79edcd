"""The payload benchmark's handler (bench/scenarios/payloads.py): notes what it got and returns.

``record`` appends one ``seq length offloaded started`` line per call to the file named by
``CONVEYOR_BENCH_PAYLOAD_FILE``: the message's number (read from the body's first bytes: parsing a
32 MiB body would add the handler's own copies to the processor's peak RSS), the body's length,
whether it came from S3 (1 or 0), and the wall clock at the start of the call.
"""

from __future__ import annotations

import os
import re
import time

from conveyor import Message

PAYLOAD_FILE = os.environ.get("CONVEYOR_BENCH_PAYLOAD_FILE", "")
SEQ = re.compile(r'\{"seq":(\d+),')  # the writer's compact JSON keeps the load generator's key order


async def record(message: Message) -> None:
    started = time.time()
    match = SEQ.match(message.body)
    seq = match.group(1) if match else "-1"
    line = f"{seq} {len(message.body)} {int(message.offloaded)} {started!r}\n".encode()
    # One short write with O_APPEND: lines of concurrent calls do not interleave.
    descriptor = os.open(PAYLOAD_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
