"""``Idempotency-Key`` replay: a keyed request (or batch entry) begins and ends in the idempotency
store, in store round trips coalesced across concurrent requests, and a repeat gets the first answer
again. It never sends to SQS itself: it is given the send to run once."""
