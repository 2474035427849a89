"""A feature's configuration file, read once at start-up: the file -> a pydantic model.

The access policy (service/api/auth/policy.py), the webhooks file
(service/api/webhooks/sources.py) and the write-back file (workers/notify/writeback.py) are each
read here: JSON when the name ends in ``.json``, else YAML; an empty file is ``{}``. Anything
wrong is a ``ValueError`` with one line: the location and pydantic's reason for the first
problem, or why the file cannot be read (the exception's type, never the file's text: a line
of it could hold a secret). :func:`configured` turns that into a :class:`ConfigError` that
names the variable the operator set, which is what start-up prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from service.core.errors import ConfigError

__all__ = ["configured", "first_problem", "load_model", "read_data"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def read_data(path: Path) -> Any:
    """The file's data (JSON by its suffix, else YAML); ValueError when it cannot be read."""
    try:
        text = Path(path).read_text()
        return json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read {str(path)!r}: {type(e).__name__}") from None


def first_problem(error: ValidationError, whole: str = "file") -> str:
    """``where: reason`` for the first error; ``whole`` names a problem of the whole document."""
    first = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"


def load_model(model: type[M], path: Path) -> M:
    """The file validated as ``model``; ValueError naming the first problem."""
    raw = read_data(path)
    try:
        return model.model_validate(raw or {})
    except ValidationError as e:
        raise ValueError(first_problem(e)) from None


def configured(variable: str, load: Callable[[], T]) -> T:
    """``load()``'s result; its ValueError as a ConfigError naming ``variable``."""
    try:
        return load()
    except ValueError as e:
        raise ConfigError(f"{variable}: {e}") from None
