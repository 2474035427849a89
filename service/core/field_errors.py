"""Validation errors built by hand: a cross-field rule reported at its own field, and an error
of one ValidationError raised again in another (the request body's wrap validator).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["field_errors", "reraised"]


def reraised(error: Any) -> InitErrorDetails:
    """An error of one ValidationError, to be raised again in another."""
    ctx = error.get("ctx") or {}
    message = str(error["msg"]).replace("{", "{{").replace("}", "}}")
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], message, {k: str(v) for k, v in ctx.items()}),
        loc=tuple(error["loc"]),
        input=error.get("input"),
    )


def field_errors(title: str, problems: list[tuple[str, str]], source: Any) -> ValidationError:
    """A ValidationError locating each (field, reason) at its own field, not at the body."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "Value error, {reason}", {"reason": r}),
                loc=(f,),
                input=source,
            )
            for f, r in problems
        ],
    )
