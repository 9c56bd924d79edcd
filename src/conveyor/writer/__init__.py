"""queue-writer: the REST API that validates messages and writes them to SQS.

Its parts, from the bottom (``tests/unit/test_layers.py`` keeps each from importing a later one):

- ``api/``: what the API says, spoken by every part: the bodies, the problem documents, the
  metadata a request's messages carry; ``metrics.py``; ``startup.py``, the queue read at start-up;
- ``sending/``: a valid message onto SQS (SQS's rules, FIFO ids, the coalescing sender), and
  ``replay/``: ``Idempotency-Key`` replay over the idempotency store; neither knows the other;
- ``state.py``: what the routes share (the queue once known, the sender, the replay);
- ``batch/``: ``POST /messages/batch``, entry by entry, each FIFO group in order;
- ``http/``: the plain-ASGI edge, the fast path, the FastAPI routes, error handlers and docs; and
  ``lifespan.py``: the running writer's start and stop;
- ``app.py``: :func:`~conveyor.writer.app.create_app`, the app put together;
- the entry points: ``server.py`` (``queue-writer``) and ``asgi.py`` (uvicorn's factory,
  ``conveyor.writer.asgi:app``).
"""
