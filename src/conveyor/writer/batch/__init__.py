"""``POST /messages/batch``: each entry validated and keyed on its own, the valid ones sent (on a FIFO
queue each group's in request order), the answer reported per entry. It uses sending and replay,
and returns the route's response; the HTTP side only routes the request to it."""
