"""Base classes for the API's schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Input(BaseModel):
    """A request body: a JSON object whose fields the schema lists (R23).

    Unknown fields are dropped, never written: the allowlist is the schema itself. Anything but
    an object is refused. (A plain pydantic model, not ninja's ``Schema``: that one reads fields
    off any value, attributes included, and would take a list or a number for an empty body
    when every field is optional.)
    """

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _a_json_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("Send a JSON object.")
        return data
