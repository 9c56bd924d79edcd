"""The canary: a message posted through the public API that a processor answers instead of handling.

``wire`` is the format, ``probe`` and ``command`` the CLI's side (`conveyor canary`); the processor's
side, which answers canaries, is the processor's own (:mod:`conveyor.processor.engine.canary_reply`): this
package imports nothing of the processor. See docs/canary.md.
"""
