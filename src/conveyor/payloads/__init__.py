"""Payloads past SQS's size limit, stored in S3 (the claim-check pattern), on the AWS SQS Extended
Client libraries' wire format: Conveyor reads what their Java and Python producers offload, and they
read what Conveyor offloads.

- :mod:`~conveyor.payloads.pointer`: the wire format (the pointer body, the size attribute, the
  receipt handles the extended clients make);
- :mod:`~conveyor.payloads.store`: the S3 calls, their errors classified;
- :mod:`~conveyor.writer.sending.offload`: the writer's side (store, then send; remove what was not sent);
- :mod:`~conveyor.payloads.fetch` and :mod:`~conveyor.payloads.reclaim`: the processor's side
  (fetch before the handler, delete after the message).
"""
