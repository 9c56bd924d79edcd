"""What the writer's HTTP API says, shared by every part of the writer: the request and response
bodies (the OpenAPI document is generated from them), the problem documents every refusal becomes,
and the metadata every message of a request carries. It imports no other part of the writer, so
that sending, replay and the batch route can speak it without knowing about HTTP serving."""
