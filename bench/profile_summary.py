"""Where the writer's CPU goes: a py-spy profile (``--format raw``, as ``bench.scenarios.writer_cpu --profile``
writes it) summed by part of the stack.

    .venv/bin/python -m bench.profile_summary PROFILE.txt [--cpu-ms 0.33]

Each sample is given to the part of the first frame, from the innermost outwards, that belongs to a
known part (the standard library is looked through: ``json.dumps`` under a response is the
response's). With ``--cpu-ms`` (the CPU per accepted message measured in the same run) each part's
share is also shown in ms per message.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# (part, pattern on "function (file:line)"), first match wins for a frame
PARTS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("botocore: signing", r"\((?:aio)?botocore/(?:auth|signers)\.py"),
        ("botocore: serialisation", r"\(botocore/(?:serialize|validate)\.py"),
        ("botocore: parsing", r"\((?:aio)?botocore/parsers\.py"),
        ("botocore: user agent", r"\((?:aio)?botocore/useragent\.py"),
        ("botocore: endpoint rules", r"\((?:aio)?botocore/(?:endpoint_provider|regions)\.py"),
        ("botocore: retries", r"\((?:aio)?botocore/(?:retries/|retryhandler)"),
        ("botocore: event hooks", r"\((?:aio)?botocore/hooks\.py"),
        (
            "botocore: HTTP",
            r"\((?:aiohttp/|yarl/|multidict/|aiobotocore/(?:httpsession|_endpoint_helpers|endpoint)\.py)",
        ),
        ("botocore: other", r"\((?:aio)?botocore/"),
        ("prometheus-client metrics", r"\(prometheus_client/"),
        ("logging", r"\((?:structlog/|logging/)"),
        ("writer: fast path", r"\(conveyor/writer/http/fast_path\.py"),
        (
            "writer: validation (outgoing, limits)",
            r"\(conveyor/(?:writer/sending/(?:outgoing|fifo_ids)|sqs/limits)\.py",
        ),
        ("writer: edge middleware", r"\(conveyor/writer/(?:http/edge|http/edge_request|api/request_meta)\.py"),
        ("writer: sender, batcher", r"\(conveyor/(?:writer/sending/sender|sqs/batcher|sqs/batch_call)\.py"),
        ("writer: routes", r"\(conveyor/writer/http/routes\.py"),
        ("response (Starlette/FastAPI)", r"\((?:starlette/responses|fastapi/encoders)\.py|serialize_response"),
        ("pydantic validation", r"\((?:pydantic|pydantic_core)/|\(fastapi/_compat"),
        ("body read, JSON, dependencies", r"\((?:starlette/requests|fastapi/dependencies/)|run_endpoint_function"),
        ("Starlette/FastAPI routing, middleware", r"\((?:starlette|fastapi)/"),
        ("uvicorn/httptools", r"\(uvicorn/"),
        ("asyncio", r"\(asyncio/"),
    ]
]
STDLIB = re.compile(r"\((?:json|re|uuid|hmac|hashlib|copy|email|datetime|urllib|http|typing|enum|functools|"
                    r"contextlib|collections|abc|dataclasses|inspect|weakref|socket|ssl|base64|os|threading|"
                    r"string|calendar|_strptime|time|random|io|codecs|decimal|numbers|operator|types)[/.]")  # fmt: skip
FRAME = re.compile(r"[^;]+? \([^;]*?:\d+\)")


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        if STDLIB.search(frame):
            continue
        for name, pattern in PARTS:
            if pattern.search(frame):
                return name
    return "other"


def summarise(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            counts[part_of(stack)] += int(number)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--cpu-ms", type=float, help="CPU ms per accepted message, to show each part in ms")
    args = parser.parse_args(argv)
    counts = summarise(args.profile)
    total = sum(counts.values())
    if not total:
        print(f"bench.profile_summary: no samples in {args.profile}", file=sys.stderr)
        return 1
    print(f"| part | share | ms per message |\n|---|---|---|  <!-- {total} samples -->")
    for name, count in counts.most_common():
        share = count / total
        ms = f"{share * args.cpu_ms:.3f}" if args.cpu_ms else ""
        print(f"| {name} | {100 * share:.1f}% | {ms} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
