"""queue-processor."""
