"""The writer's HTTP side: the plain-ASGI edge every request passes (request ids, content type, body
limit, metrics, the server span), the fast path that answers the valid ``POST /messages`` inside
the edge, the FastAPI routes and error handlers, and the API's documentation. It sits on top of the
parts that do the work (sending, replay, batch) and calls them; none of them calls it."""
