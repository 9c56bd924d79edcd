"""The base of every error a user of Conveyor can fix or must know of.

Its text is one readable line, and ``exit_code`` is what a command exits with when it stops on it
(``conveyor``, ``queue-writer``, ``queue-processor`` print ``<command>: <text>`` on stderr). Settings
and configuration problems exit 2, everything else 1.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_CONFIG = 2


class ConveyorError(Exception):
    """An error with one readable line and the exit code of a command that stops on it."""

    exit_code = EXIT_FAILURE


class ConfigurationError(ConveyorError):
    """A setting or a piece of configuration that cannot work (no region, a handler that does not
    import, ...)."""

    exit_code = EXIT_CONFIG
