"""MkDocs hook: the configuration page's table, made from the settings classes at build time."""

from typing import Any

from conveyor.settings_table import with_table


def on_page_markdown(markdown: str, **_: Any) -> str:
    return with_table(markdown)
