"""service/core/files.py: a config file to a model, or one line naming the first problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, field_validator

from service.core.errors import ConfigError
from service.core.files import configured, load_model, read_data


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "default"
    limits: dict[str, int] = {}

    @field_validator("name")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("must not hold spaces")
        return value


def test_yaml_and_json_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nlimits:\n  x: 1\n")
    (tmp_path / "b.json").write_text('{"name": "b"}')
    assert load_model(Sample, tmp_path / "a.yaml") == Sample(name="a", limits={"x": 1})
    assert load_model(Sample, tmp_path / "b.json").name == "b"


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert load_model(Sample, tmp_path / "empty.yaml") == Sample()


def test_the_first_problem_names_its_location_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: two words\n")
    with pytest.raises(ValueError, match=r"^name: must not hold spaces$"):
        load_model(Sample, path)
    path.write_text("limits:\n  x: many\n")
    with pytest.raises(ValueError, match=r"^limits\.x: "):
        load_model(Sample, path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match=r"^file: "):
        load_model(Sample, path)


def test_an_unreadable_file_names_the_error_type_not_its_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed s3cr3t-value\n")
    with pytest.raises(ValueError, match=r"cannot read .*broken\.yaml.*: ") as info:
        read_data(path)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ValueError, match="FileNotFoundError"):
        read_data(tmp_path / "missing.yaml")


def test_configured_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": 3}')
    with pytest.raises(ConfigError, match=r"^PROVISIONER_X_FILE: name: "):
        configured("PROVISIONER_X_FILE", lambda: load_model(Sample, path))
    assert configured("PROVISIONER_X_FILE", lambda: 7) == 7
