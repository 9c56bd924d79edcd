"""SendMessageBatch for the writer's hot path: botocore's own pieces, without the client's per-call preparation.

``client.send_message_batch(...)`` costs about 1 ms of CPU per call here, most of it preparation that
gives the same result on every call of this operation: parameter events with no handler for it, the
endpoint rules (for SQS they depend only on the region and the configuration), a walk over the
request's shapes to serialise what is already the JSON protocol's body, ``before-call`` handlers that
do not apply to SQS, checksum and compression steps SQS does not use. This module makes the call with
what matters, from the client itself:

- the endpoint and the signing context that botocore's endpoint rules give for this client (resolved
  once, on the first call), and the serializer's own headers (target, content type, query mode);
- the client's request signer: SigV4 by botocore, with the client's credentials, refreshed when they
  expire (the standard credential chain);
- the client's HTTP session: its connection pool, timeouts, and connection errors raised as botocore's
  exceptions;
- the client's retry handler, through the same ``needs-retry`` event: standard mode, the same number of
  attempts, backoff and retry quota, the ``amz-sdk-*`` headers;
- botocore's response parser for errors (with the modelled error fields), the client's ``after-call``
  handlers (SQS's query-compatible error code; Conveyor's per-call metrics), and the same
  ``ClientError`` classes: ``conveyor.sqs.errors.classify`` sees what it would see from the client.

The body is the parameters as JSON, exactly as botocore's JSON serializer writes it (``json.dumps``);
a successful answer is read with ``json.loads`` (what botocore's JSON parser returns for it, less the
response metadata). Anything unexpected while preparing (a botocore release that moved a piece) makes
this fall back to ``client.send_message_batch`` for good. It reaches into private parts of botocore and
aiobotocore (both pinned in the lock files): tests/unit/test_sqs_send_batch.py plays the same answers to
it and to the client's own call and compares the requests, answers, retries and errors; it is the check
to run after upgrading either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from aiobotocore.endpoint import convert_to_response_dict
from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.handlers import add_retry_headers
from botocore.hooks import first_non_none_response

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("conveyor.sqs")
OPERATION = "SendMessageBatch"


class _Prepared:
    """What every call of the operation shares, read from the client once."""

    def __init__(self, client: Any, model: Any, endpoint_url: str, headers: dict[str, str], context: dict[str, Any]):
        self.client = client
        self.model = model
        self.endpoint = client._endpoint  # botocore's own pieces, private: see the module's doc
        self.endpoint_url = endpoint_url
        self.headers = headers
        self.context = context
        service_id = client.meta.service_model.service_id.hyphenize()
        self.before_send = f"before-send.{service_id}.{OPERATION}"
        self.after_call = f"after-call.{service_id}.{OPERATION}"
        self.after_call_error = f"after-call-error.{service_id}.{OPERATION}"
        self.parser = self.endpoint._response_parser_factory.create_parser(model.service_model.resolved_protocol)


class BatchSender:
    """``await sender(queue_url, entries)``: what ``client.send_message_batch(QueueUrl=..., Entries=...)``
    returns or raises, for less CPU (see the module's doc)."""

    def __init__(self, client: SQSClient) -> None:
        self._client: Any = client
        self._prepared: _Prepared | None = None
        self._fallback = False

    async def __call__(self, queue_url: str, entries: list[Any]) -> Mapping[str, Any]:
        prepared = None if self._fallback else self._prepared or await self._prepare(queue_url, entries)
        if prepared is None:
            answer: Mapping[str, Any] = await self._client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            return answer
        return await _send(prepared, {"QueueUrl": queue_url, "Entries": entries})

    async def _prepare(self, queue_url: str, entries: list[Any]) -> _Prepared | None:
        client = self._client
        try:
            model = client.meta.service_model.operation_model(OPERATION)
            params = {"QueueUrl": queue_url, "Entries": entries}
            context = _request_context(client, model)
            endpoint_url, extra_headers, properties = await client._resolve_endpoint_ruleset(model, params, context)
            if properties:
                context["endpoint_properties"] = properties
            template = client._serializer.serialize_to_request(params, model)
            _check_json_protocol(template)
            headers = {**template["headers"], **extra_headers}
            self._prepared = _Prepared(client, model, endpoint_url, headers, context)
        except Exception as exc:  # noqa: BLE001 - any surprise: the client's own method, for good
            log.warning("sqs_batch_sender_fallback", error=f"{type(exc).__name__}: {exc}")
            self._fallback = True
            return None
        return self._prepared


def _check_json_protocol(template: Mapping[str, Any]) -> None:
    """The request this module makes: a POST of JSON to the endpoint's root."""
    if (template["method"], template["url_path"], template["query_string"]) != ("POST", "/", ""):
        raise ValueError(f"not the JSON protocol's request: {template['method']} {template['url_path']}")


def _request_context(client: Any, model: Any) -> dict[str, Any]:
    """The request context ``_make_api_call`` builds for this operation."""
    return {
        "client_region": client.meta.region_name,
        "client_config": client.meta.config,
        "has_streaming_input": model.has_streaming_input,
        "auth_type": model.resolved_auth_type,
        "unsigned_payload": model.unsigned_payload,
        "auth_options": client.meta.service_model.metadata.get("auth"),
    }


async def _send(prepared: _Prepared, params: dict[str, Any]) -> Mapping[str, Any]:
    client = prepared.client
    request_dict: dict[str, Any] = {
        "url_path": "/",
        "query_string": "",
        "method": "POST",
        "headers": dict(prepared.headers),
        "body": json.dumps(params).encode(),  # botocore's JSON serializer: json.dumps, UTF-8
    }
    prepare_request_dict(
        request_dict,
        endpoint_url=prepared.endpoint_url,
        context=_copy_context(prepared.context),
        user_agent=client._user_agent_creator.to_string(),
    )
    http_response, parsed, error = await _attempts(prepared, request_dict)
    if http_response is not None:
        await client.meta.events.emit(
            prepared.after_call,
            http_response=http_response,
            parsed=parsed,
            model=prepared.model,
            context=request_dict["context"],
        )
    if error is not None:
        await client.meta.events.emit(prepared.after_call_error, exception=error, context=request_dict["context"])
        raise error
    if http_response.status_code >= 300:
        error_info = parsed.get("Error", {})
        code = request_dict["context"].get("error_code_override") or error_info.get("Code")
        raise client.exceptions.from_code(code)(parsed, OPERATION)
    answer: Mapping[str, Any] = parsed
    return answer


def _copy_context(context: dict[str, Any]) -> dict[str, Any]:
    copied = dict(context)
    if "signing" in copied:
        copied["signing"] = dict(copied["signing"])
    return copied


async def _attempts(prepared: _Prepared, request_dict: dict[str, Any]) -> tuple[Any, Any, BaseException | None]:
    """botocore's retry loop (``Endpoint._send_request``): one attempt, then as many more as the
    client's retry handler asks for, after the delay it says."""
    endpoint = prepared.endpoint
    context = request_dict["context"]
    attempts = 1
    endpoint._update_retries_context(context, attempts)
    while True:
        response, error = await _attempt(prepared, request_dict)
        if not await endpoint._needs_retry(attempts, prepared.model, request_dict, response, error):
            break
        attempts += 1
        endpoint._update_retries_context(context, attempts, response)
    if response is None:
        return None, None, error
    return response[0], response[1], None


async def _attempt(
    prepared: _Prepared, request_dict: dict[str, Any]
) -> tuple[tuple[Any, Any] | None, Exception | None]:
    """One signed request: ``((http_response, parsed), None)`` or ``(None, the exception)``."""
    request = create_request_object(request_dict)
    add_retry_headers(request)
    try:
        await prepared.client._request_signer.sign(OPERATION, request)
        ready = prepared.endpoint.prepare_request(request)
        answers = await prepared.client.meta.events.emit(prepared.before_send, request=ready)  # stubs, as botocore
        http_response = first_non_none_response(answers)
        if http_response is None:
            http_response = await prepared.endpoint.http_session.send(ready)
    except Exception as exc:  # noqa: BLE001 - as botocore's endpoint: the retry handler decides
        return None, exc
    if http_response.status_code == 200:
        return (http_response, json.loads(await http_response.content)), None
    response_dict = await convert_to_response_dict(http_response, prepared.model)
    parsed = await prepared.parser.parse(response_dict, prepared.model.output_shape)
    await prepared.endpoint._add_modeled_error_fields(response_dict, parsed, prepared.model, prepared.parser)
    return (http_response, parsed), None
