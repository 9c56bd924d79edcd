"""A valid message onto SQS: the request's message checked against SQS's rules and made into exactly
the SendMessageBatch entry (its FIFO ids in its client's scope), then sent through the one coalescing
sender, each caller answered with its own MessageId or the problem that says why not. It knows
nothing of HTTP serving, of the batch route or of idempotency replay: those call it."""
