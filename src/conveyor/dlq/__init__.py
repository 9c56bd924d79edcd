"""`conveyor dlq`: the dead-letter queue, looked at (peek, export), put back (redrive) or emptied
(purge). ``record`` reads the dead-letter record and filters, ``scan`` reads a queue through,
``redrive`` moves messages back, ``command`` is the command line."""
