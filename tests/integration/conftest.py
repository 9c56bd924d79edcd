from tests.localstack_fixtures import localstack, queues, sqs

__all__ = ["localstack", "queues", "sqs"]
