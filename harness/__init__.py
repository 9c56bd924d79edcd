"""Real local servers for the tests and the benchmarks alike: LocalStack's SQS and redis-server as
child processes on free ports of 127.0.0.1, and a plain boto3 client to look at a queue.

Neither ``tests/`` nor ``bench/`` owns them: both import this package, which imports no pytest and
nothing from either. (The in-memory parts, the fake SQS, belong in the test kit users get.)
"""
