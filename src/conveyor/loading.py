"""Importing the user's code named in a setting (``package.module:attribute``), from the folder the
service was started in, as uvicorn does: no PYTHONPATH needed for a module beside you."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from conveyor.contracts import App, load_app
from conveyor.errors import ConfigurationError


class UserCodeError(ConfigurationError):
    """A setting does not name something importable; the message is one readable line."""


def importable_from_here() -> None:
    """The current folder first on ``sys.path`` (once)."""
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)


def import_object(spec: str, setting: str, noun: str, what: str) -> Any:
    """The object ``spec`` (``package.module:name.attr``) names; ``setting`` names the variable and
    ``noun`` what it holds (``handler``, ``app``) in the error."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserCodeError(f"{setting} must look like package.module:{what}, not {spec!r}")
    importable_from_here()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserCodeError(f"cannot import {noun} module {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UserCodeError(f"{setting}: {module_name!r} has no {attr!r}")
    return target


def import_app(spec: str) -> App:
    """The :class:`conveyor.App` ``CONVEYOR_APP`` names, every handler's annotations checked."""
    return load_app(import_object(spec, "CONVEYOR_APP", "app", "app"), spec)
