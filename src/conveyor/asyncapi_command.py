"""`conveyor asyncapi`: print the queue's AsyncAPI 3.0.0 document for the app (``--app`` or
``CONVEYOR_APP``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from conveyor import asyncapi
from conveyor.errors import ConfigurationError
from conveyor.loading import import_app
from conveyor.settings import SqsSettings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "asyncapi", help="print the queue's AsyncAPI document for your app",
        description="Print an AsyncAPI 3.0.0 document of the queue: one message per type of the app, with its"
        " payload's JSON schema and the conveyor.* attributes as headers. The writer serves the same at"
        " /asyncapi.json.",
    )  # fmt: skip
    parser.add_argument("--app", metavar="APP", help="package.module:app (default: CONVEYOR_APP)")
    parser.add_argument("--queue-name", metavar="NAME", help="the queue's name (default: CONVEYOR_QUEUE_NAME)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write it to FILE instead of stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = args.app or os.environ.get("CONVEYOR_APP")
    if not spec:
        raise ConfigurationError("no app: pass --app package.module:app or set CONVEYOR_APP")
    queue_name = args.queue_name or SqsSettings().queue_name
    text = json.dumps(asyncapi.document(import_app(spec), queue_name), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 0
