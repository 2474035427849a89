"""docs/api.md, rendered from the document, and the module's command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.api.openapi import build_openapi, main, render_markdown

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_docs_api_md_is_in_sync() -> None:
    expected = render_markdown(build_openapi())
    assert DOCS.read_text() == expected, (
        "docs/api.md is stale: run `python -m service.api.openapi markdown > docs/api.md`"
    )


def test_main_prints_json_and_markdown(capsys: Any) -> None:
    assert main(["json"]) == 0
    assert '"openapi": "3.1.0"' in capsys.readouterr().out
    assert main(["markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Intake API reference")
