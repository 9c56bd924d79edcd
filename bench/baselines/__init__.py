"""Naive baselines, written the way tutorials write them, run side by side with Conveyor.

Each is its own process (so its CPU and memory are its own) and exposes, on ``/metrics``, the two
counters the harness reads from Conveyor under Conveyor's names: ``conveyor_sqs_requests_total``
(one per SQS API call, counted by the same botocore ``after-call`` events Conveyor counts with) and,
for the consumer, ``conveyor_processor_succeeded_total``. The instrumentation lives in
``counting.py``; the code under test stays as a tutorial has it.
"""
