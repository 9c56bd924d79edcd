"""queue-writer: the REST API that validates messages and writes them to SQS."""
