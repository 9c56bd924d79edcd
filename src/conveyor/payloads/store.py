"""The S3 calls the services make for payloads: put one, get one, delete many. Every failure comes
out classified (:mod:`conveyor.payloads.errors`); the bytes are handed through, not copied."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.payloads.errors import (
    S3_ERRORS,
    PayloadMissingError,
    PayloadStoreError,
    PayloadUnreadableError,
    error_code,
    is_missing,
)
from conveyor.payloads.pointer import Pointer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

MAX_DELETE_KEYS = 1000  # DeleteObjects takes at most 1,000 keys
# The largest payload the processor downloads: the writer's largest request (CONVEYOR_MAX_REQUEST_BYTES'
# ceiling). A pointer to anything larger (another producer's, or a hostile one) would take the
# process's memory with it, and the next processor's after it, receive after receive.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


class PayloadStore:
    """Payloads in S3, through the process's one S3 client."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    async def put(self, pointer: Pointer, data: bytes) -> None:
        """Store ``data`` where ``pointer`` says; raises :class:`PayloadStoreError`."""
        try:
            await self._client.put_object(
                Bucket=pointer.bucket, Key=pointer.key, Body=data, ContentType="application/json"
            )
        except S3_ERRORS as exc:
            raise _failed("PutObject", exc) from exc

    async def get_text(self, pointer: Pointer) -> str:
        """The payload as text; raises :class:`PayloadMissingError` (gone for good),
        :class:`PayloadUnreadableError` (not UTF-8) or :class:`PayloadStoreError`."""
        try:
            response = await self._client.get_object(Bucket=pointer.bucket, Key=pointer.key)
            async with response["Body"] as stream:
                length = int(response.get("ContentLength") or 0)
                if length > MAX_PAYLOAD_BYTES:
                    raise PayloadUnreadableError(
                        f"{pointer.location} is {length} bytes, over the {MAX_PAYLOAD_BYTES} a payload may have"
                    )
                data = await stream.read()
        except S3_ERRORS as exc:
            if is_missing(exc):
                raise PayloadMissingError(f"{pointer.location} does not exist ({error_code(exc)})") from exc
            raise _failed("GetObject", exc) from exc
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise PayloadUnreadableError(f"{pointer.location} is not UTF-8 text: {exc.reason}") from exc

    async def delete(self, bucket: str, keys: Sequence[str]) -> list[str]:
        """Delete ``keys`` of ``bucket`` (up to :data:`MAX_DELETE_KEYS`); returns those S3 did not
        delete (a key already gone counts as deleted); raises :class:`PayloadStoreError` if the
        call failed as a whole."""
        objects: list[Any] = [{"Key": key} for key in keys]
        try:
            response = await self._client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        except S3_ERRORS as exc:
            raise _failed("DeleteObjects", exc) from exc
        return [str(error.get("Key")) for error in response.get("Errors", [])]

    async def delete_one(self, pointer: Pointer) -> None:
        """Delete one object (a key already gone is fine); raises :class:`PayloadStoreError`."""
        try:
            await self._client.delete_object(Bucket=pointer.bucket, Key=pointer.key)
        except S3_ERRORS as exc:
            raise _failed("DeleteObject", exc) from exc


def _failed(operation: str, exc: BaseException) -> PayloadStoreError:
    return PayloadStoreError(operation, error_code(exc), str(exc))
