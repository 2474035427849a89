"""The status page's static files: public, typed, versioned, cacheable."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from service.api.ui.static import ASSETS, IMMUTABLE, REVALIDATE, static_url


async def test_static_files_are_served_with_types_and_caching(
    client: TestClient[Any, Any],
) -> None:
    assert set(ASSETS) == {"ui.css", "ui.js"}
    for name, content_type in (("ui.css", "text/css"), ("ui.js", "text/javascript")):
        # Public: the sign-in page needs the style sheet before anyone has signed in.
        resp = await client.get(static_url(name), allow_redirects=False)
        assert resp.status == 200, name
        assert resp.content_type == content_type
        assert resp.charset == "utf-8"
        assert resp.headers["Cache-Control"] == IMMUTABLE
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == ASSETS[name].body
        etag = resp.headers["ETag"]
        again = await client.get(f"/ui/static/{name}", headers={"If-None-Match": etag})
        assert again.status == 304
        assert again.headers["Cache-Control"] == REVALIDATE
        stale = await client.get(f"/ui/static/{name}?v=old")
        assert stale.status == 200
        assert stale.headers["Cache-Control"] == REVALIDATE
    missing = await client.get("/ui/static/nope.js", allow_redirects=False)
    assert missing.status == 404
    assert "text/html" in missing.headers["Content-Type"]
    # Only the packaged files, by name: no path reaches another file.
    escape = await client.get("/ui/static/..%2Froutes.py", allow_redirects=False)
    assert escape.status == 404


async def test_the_pages_link_the_versioned_files(client: TestClient[Any, Any]) -> None:
    text = await (await client.get("/ui/login")).text()
    assert f'<link rel="stylesheet" href="{static_url("ui.css")}">' in text
    assert re.search(r"\?v=[0-9a-f]{16}", static_url("ui.js"))
    assert "<script" not in text  # the sign-in page runs no script


async def test_the_script_uses_no_inline_code_or_eval() -> None:
    script = ASSETS["ui.js"].body.decode()
    for banned in ("eval(", "innerHTML", "new Function", "document.write"):
        assert banned not in script


def test_the_wheel_takes_every_template_and_static_file() -> None:
    # The files are package data; a new one whose pattern pyproject.toml lacks would be missing
    # from the wheel (and the page broken only once installed).
    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["service.api.ui"]
    package = root / "service" / "api" / "ui"
    files = [p for d in ("templates", "static") for p in (package / d).iterdir() if p.is_file()]
    assert len(files) >= 9
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative
