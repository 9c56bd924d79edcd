"""A second process for the SQLite tests: ``python -m tests.idempotency_claimer URL KEY PREFIX N`` prints
"ready", waits for a line on stdin, then makes N concurrent claims of KEY (owners PREFIX-0...) and
prints their answers as one JSON list."""

from __future__ import annotations

import asyncio
import json
import sys

from conveyor.idempotency import open_store


async def main(url: str, key: str, prefix: str, count: int) -> None:
    async with open_store(url) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        claims = await asyncio.gather(*(store.claim([key], f"{prefix}-{i}", 60) for i in range(count)))
    print(json.dumps([claim.value for [claim] in claims]), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
