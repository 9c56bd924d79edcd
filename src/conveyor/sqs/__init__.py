"""SQS plumbing shared by the writer and the processor."""
