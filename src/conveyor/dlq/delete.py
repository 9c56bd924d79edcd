"""Delete chosen messages from a dead-letter queue (the console's "delete selected"): the DLQ read
through once (see :mod:`conveyor.dlq.scan`), each message the filter chooses deleted, the rest made
visible again at the end. What arrived after the start is left alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.dlq.locate import Located
from conveyor.dlq.record import DeadLettered, Filter
from conveyor.dlq.report import Emit
from conveyor.dlq.scan import Scan
from conveyor.sqs.errors import SQS_ERRORS, classify

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass(slots=True)
class DeleteReport:
    deleted: int = 0
    skipped: int = 0
    failed: int = 0


async def delete_matching(client: SQSClient, located: Located, chosen: Filter, emit: Emit) -> DeleteReport:
    report = DeleteReport()
    async with Scan(client, located.dlq_url, started_ms=int(time.time() * 1000)) as scan:
        async for batch in scan.batches():
            now_ms = int(time.time() * 1000)
            doomed = [message for message in batch if chosen.matches(message, now_ms)]
            report.skipped += len(batch) - len(doomed)
            if doomed:
                await _delete(client, located, scan, doomed, report=report, emit=emit)
    return report


async def _delete(
    client: SQSClient, located: Located, scan: Scan, doomed: list[DeadLettered], *, report: DeleteReport, emit: Emit
) -> None:
    entries = [{"Id": str(n), "ReceiptHandle": m.receipt_handle} for n, m in enumerate(doomed)]
    try:
        response = await client.delete_message_batch(QueueUrl=located.dlq_url, Entries=entries)  # type: ignore[arg-type]
        failed = {f["Id"]: f"{f['Code']} ({f.get('Message', '')})" for f in response.get("Failed", [])}
    except SQS_ERRORS as exc:
        failure = classify(exc)
        failed = {entry["Id"]: f"{failure.code} ({failure.message})" for entry in entries}
    for n, message in enumerate(doomed):
        why = failed.get(str(n))
        kind = message.error_type or "(no record)"
        if why is None:
            scan.deleted(message.message_id)
            report.deleted += 1
            emit(f"deleted  {message.message_id}  {kind}")
        else:
            report.failed += 1
            emit(f"failed   {message.message_id}  {kind}: not deleted: {why}")
