"""The writer's mirror settings: a share of accepted messages copied to a pre-prod queue (see
docs/mirror.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MirrorSettings(BaseSettings):
    """Copies of live traffic for a pre-prod queue ([Mirroring](mirror.md))."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    mirror_queue_url: AnyHttpUrl | None = None
    """a queue (of the same kind: standard or FIFO) the writer copies a share of the messages it accepted to, after
    answering, never at the live path's expense ([Mirroring](mirror.md)); unset: off"""
    mirror_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0
    """the share of accepted messages copied (0 to 1), chosen by message id: the same message is always in or out"""
