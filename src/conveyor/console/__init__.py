"""`conveyor console`: a web console over the queue, its dead-letter queue and its canary queue."""
