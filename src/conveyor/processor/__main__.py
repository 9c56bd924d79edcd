"""``python -m conveyor.processor``: the same program as the `queue-processor` console script (the
supervisor starts its engine processes this way)."""

from conveyor.cli import processor_main

processor_main()
