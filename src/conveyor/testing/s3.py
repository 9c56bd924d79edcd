"""An in-memory S3 with the calls the payload path makes (PutObject, GetObject, DeleteObject,
DeleteObjects, CreateBucket), where an aiobotocore S3 client is expected. Faults are injected
explicitly: ``fail_calls`` makes calls raise (``fail_calls["GetObject"].append(error)``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from conveyor.testing.stored import client_error

__all__ = ["InMemoryS3"]


class _Body:
    """GetObject's streaming body: read once, closed by ``async with``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        return self._data

    async def __aenter__(self) -> _Body:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


class InMemoryS3:
    def __init__(self, *buckets: str) -> None:
        self.objects: dict[str, dict[str, bytes]] = {name: {} for name in buckets}  # bucket -> key -> data
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_calls: dict[str, list[BaseException]] = defaultdict(list)
        self.call_delay: dict[str, float] = {}  # operation -> seconds before it answers (a slow S3)

    async def _call(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((operation, kwargs))
        if delay := self.call_delay.get(operation):
            await asyncio.sleep(delay)
        if self.fail_calls[operation]:
            raise self.fail_calls[operation].pop(0)

    def _bucket(self, name: str, operation: str) -> dict[str, bytes]:
        if name not in self.objects:
            raise client_error("NoSuchBucket", operation, 404, "The specified bucket does not exist")
        return self.objects[name]

    async def create_bucket(self, Bucket: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803 - boto3's names
        await self._call("CreateBucket", {"Bucket": Bucket, **kwargs})
        if Bucket in self.objects:
            raise client_error("BucketAlreadyOwnedByYou", "CreateBucket", 409)
        self.objects[Bucket] = {}
        return {}

    async def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        await self._call("PutObject", {"Bucket": Bucket, "Key": Key, **kwargs})
        self._bucket(Bucket, "PutObject")[Key] = bytes(Body)
        return {"ETag": '"0"'}

    async def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        await self._call("GetObject", {"Bucket": Bucket, "Key": Key})
        stored = self._bucket(Bucket, "GetObject")
        if Key not in stored:
            raise client_error("NoSuchKey", "GetObject", 404, "The specified key does not exist.")
        return {"Body": _Body(stored[Key]), "ContentLength": len(stored[Key])}

    async def delete_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        await self._call("DeleteObject", {"Bucket": Bucket, "Key": Key})
        self._bucket(Bucket, "DeleteObject").pop(Key, None)
        return {}

    async def delete_objects(self, Bucket: str, Delete: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        await self._call("DeleteObjects", {"Bucket": Bucket, "Delete": Delete})
        stored = self._bucket(Bucket, "DeleteObjects")
        keys = [item["Key"] for item in Delete["Objects"]]
        if len(keys) > 1000:
            raise client_error("MalformedXML", "DeleteObjects")
        for key in keys:
            stored.pop(key, None)
        return {"Deleted": [{"Key": key} for key in keys]} if not Delete.get("Quiet") else {}

    def keys(self, bucket: str) -> list[str]:
        return sorted(self.objects.get(bucket, {}))

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)
