"""The canary: a message posted through the public API that a processor answers instead of handling.

``wire`` is the format, ``reply`` the processor's side, ``probe`` and ``command`` the CLI's side
(`conveyor canary`). See docs/canary.md.
"""
