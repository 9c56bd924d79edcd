"""Flow control: how fast the processor takes messages and how many handlers it runs at once.

- :mod:`.rate`: a token bucket (in the process, or shared on Redis) that gates the receive;
- :mod:`.limit`: adaptive concurrency (AIMD) that follows the downstream's throttles and latency;
- :mod:`.breaker`: stops taking messages while most handler calls fail, and probes for the end;
- :mod:`.gate`: the one object the poller and the workers ask, combining the three.
"""
