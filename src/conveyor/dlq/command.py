"""`conveyor dlq peek | redrive | export | purge`: the dead-letter queue of the configured queue
(found from its RedrivePolicy), looked at, chosen from, put back, saved or emptied.

Reading a queue means receiving from it: peek, export and redrive add one to the receive count of
every message they read in the DLQ, and make what they leave there visible again at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.command_error import CommandError, sqs_trouble
from conveyor.dlq.locate import Located, locate
from conveyor.dlq.record import DeadLettered, Filter, exported
from conveyor.dlq.redrive import redrive
from conveyor.dlq.report import Request
from conveyor.dlq.scan import Scan
from conveyor.settings import SqsSettings
from conveyor.sqs.client import sqs_client
from conveyor.sqs.errors import SQS_ERRORS

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

EXIT_FAILED = 1
EXIT_USAGE = 2
BODY_PREVIEW_CHARS = 200


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (0 or more), not {text!r}")
    return value


def register(commands: argparse._SubParsersAction[Any]) -> None:
    dlq = commands.add_parser(
        "dlq", help="look at, redrive, export or purge the dead-letter queue", description=__doc__
    )
    actions = dlq.add_subparsers(dest="action", required=True)
    peek = actions.add_parser("peek", help="show dead-lettered messages and their records, leaving them there")
    peek.add_argument("--limit", type=count, default=10, help="messages to show at most (default 10)")
    peek.add_argument("--json", action="store_true", help="one JSON object per message, body in full")
    peek.set_defaults(run=_runner(_peek), prog="conveyor dlq peek")
    move = actions.add_parser("redrive", help="move messages back to the queue they came from")
    move.add_argument("--error-type", action="append", default=[], metavar="NAME",
                      help="only this recorded error type: ValueError or builtins.ValueError (repeatable)")  # fmt: skip
    move.add_argument("--older-than", type=seconds, metavar="SECONDS",
                      help="only those the processor dead-lettered at least that long ago (by their record); "
                           "those without a record are skipped: SQS's redrive policy keeps a message's original "
                           "send time, so when it reached the DLQ is not known")  # fmt: skip
    move.add_argument("--limit", type=count, help="move at most this many")
    move.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    move.set_defaults(run=_runner(_redrive), prog="conveyor dlq redrive")
    export = actions.add_parser("export", help="write every message as JSON lines (- for stdout), leaving them there")
    export.add_argument("file", metavar="FILE")
    export.set_defaults(run=_runner(_export), prog="conveyor dlq export")
    purge = actions.add_parser("purge", help="delete every message of the dead-letter queue")
    purge.add_argument("--yes", action="store_true", help="yes, delete them all")
    purge.set_defaults(run=_purge_guard, prog="conveyor dlq purge")


type Action = Callable[[SQSClient, Located, argparse.Namespace], Coroutine[Any, Any, int]]


def _runner(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = SqsSettings()

        async def main() -> int:
            async with sqs_client(settings) as client:
                located = await locate(client, settings)
                try:
                    return await action(client, located, args)
                except SQS_ERRORS as exc:
                    raise sqs_trouble(f"dead-letter queue {located.dlq_name}", exc) from exc

        return asyncio.run(main())

    return run


async def _peek(client: SQSClient, located: Located, args: argparse.Namespace) -> int:
    shown = 0
    now_ms = int(time.time() * 1000)
    async with Scan(client, located.dlq_url) as scan:
        async for batch in scan.batches(args.limit):
            for message in batch:
                shown += 1
                print(json.dumps(exported(message)) if args.json else _describe(message, now_ms), flush=True)
    if not args.json:
        attrs = await client.get_queue_attributes(
            QueueUrl=located.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        about = attrs["Attributes"].get("ApproximateNumberOfMessages", "?")
        print(f"conveyor dlq peek: {shown} shown of about {about} in {located.dlq_name}; they stay there")
    return 0


def _describe(message: DeadLettered, now_ms: int) -> str:
    lines = [f"{message.message_id}  {message.summary()}"]
    at = message.dead_lettered_at_ms
    when = f"{_iso(at)} ({ago(now_ms - at)} ago)" if at is not None else "unknown"
    record = message.record
    if record is not None:
        why = "retries exhausted" if record.get("retries_exhausted") else "rejected"
        source = str(record.get("source_queue", "?")).rsplit("/", 1)[-1]
        lines.append(
            f"    dead-lettered {when}, {why} after {record.get('receive_count', '?')} receive(s), from {source}"
        )
    else:
        lines.append(f"    sent {when}, received {message.receive_count} time(s) in all")
    body = message.body if len(message.body) <= BODY_PREVIEW_CHARS else message.body[:BODY_PREVIEW_CHARS] + "..."
    lines.append(f"    body: {body}")
    if (pointer := message.pointer) is not None:
        lines.append(f"    payload: in S3 at {pointer.location} ({pointer.size} bytes; kept while the message is here)")
    user = message.user_attributes()
    if user:
        pairs = ", ".join(f"{name}={value.get('StringValue', '<binary>')}" for name, value in user.items())
        lines.append(f"    attributes: {pairs}")
    return "\n".join(lines)


async def _redrive(client: SQSClient, located: Located, args: argparse.Namespace) -> int:
    request = Request(Filter(tuple(args.error_type), args.older_than), args.limit, args.dry_run)
    report = await redrive(client, located, request, lambda line: print(line, flush=True))
    for note in report.notes:
        print(f"note: {note}")
    if report.dry_run:
        print(f"conveyor dlq redrive: dry run: would move {report.moved}, skip {report.skipped}, "
              f"fail {report.failed}; nothing was moved")  # fmt: skip
    else:
        print(f"conveyor dlq redrive: moved {report.moved}, skipped {report.skipped}, failed {report.failed} "
              f"({report.method}; from {located.dlq_name} to {located.name})")  # fmt: skip
    return EXIT_FAILED if report.failed else 0


async def _export(client: SQSClient, located: Located, args: argparse.Namespace) -> int:
    to_stdout = args.file == "-"
    try:
        out = sys.stdout if to_stdout else open(args.file, "x", encoding="utf-8")  # noqa: ASYNC230, SIM115 - opened before any await, closed below
    except FileExistsError as exc:
        raise CommandError(f"{args.file} exists; export writes a new file (remove it or choose another name)") from exc
    written = 0
    try:
        async with Scan(client, located.dlq_url) as scan:
            async for batch in scan.batches():
                for message in batch:
                    out.write(json.dumps(exported(message), ensure_ascii=False) + "\n")
                    written += 1
    finally:
        if not to_stdout:
            out.close()
    where = "stdout" if to_stdout else args.file
    print(f"conveyor dlq export: {written} message(s) from {located.dlq_name} written to {where}; they stay there",
          file=sys.stderr if to_stdout else sys.stdout)  # fmt: skip
    return 0


def _purge_guard(args: argparse.Namespace) -> int:
    if not args.yes:
        print("conveyor dlq purge: refusing without --yes (it deletes every message of the dead-letter queue)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    return _runner(_purge)(args)


async def _purge(client: SQSClient, located: Located, args: argparse.Namespace) -> int:
    attrs = await client.get_queue_attributes(QueueUrl=located.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    about = attrs["Attributes"].get("ApproximateNumberOfMessages", "?")
    await client.purge_queue(QueueUrl=located.dlq_url)
    print(f"conveyor dlq purge: purged {located.dlq_name} (about {about} message(s); SQS may take up to 60 s)")
    return 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(ms: int) -> str:
    """``3 min``: how long, from milliseconds (peek's lines, the console's pages)."""
    total = max(0, ms // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if total >= size:
            return f"{total // size} {unit}"
    return f"{total} s"
