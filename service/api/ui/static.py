"""The status page's static files (``static/``: the style sheet and the counters script).

``GET /ui/static/{name}`` serves them from the package (read once, at import), with their
content type, an ``ETag`` (304 on ``If-None-Match``) and caching headers: the templates link
them as ``/ui/static/ui.css?v=<digest>`` (:func:`static_url`), so a versioned URL may be cached
for a year (``immutable``); an unversioned or stale one is revalidated (``no-cache``). They are
public: the login page needs them before anyone has signed in, so
:func:`service.api.ui.errors.ui_middleware` serves them without asking for credentials.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import hdrs, web

__all__ = ["STATIC_PREFIX", "routes", "static_url"]

STATIC_PREFIX = "/ui/static/"
_TYPES = {".css": "text/css", ".js": "text/javascript"}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes, content type and version (a digest of the bytes)."""

    body: bytes
    content_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _load() -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for entry in resources.files("service.api.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:16]
            assets[entry.name] = Asset(body, _TYPES[suffix], version)
    return assets


ASSETS = _load()
routes = web.RouteTableDef()


def static_url(name: str) -> str:
    """The versioned URL of a static file (a KeyError for a name that is not one)."""
    return f"{STATIC_PREFIX}{name}?v={ASSETS[name].version}"


@routes.get(STATIC_PREFIX + "{name}")
async def static_file(request: web.Request) -> web.Response:
    """One static file, with its type, ETag and caching headers."""
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    versioned = request.query.get("v") == asset.version
    headers = {
        hdrs.CACHE_CONTROL: IMMUTABLE if versioned else REVALIDATE,
        hdrs.ETAG: asset.etag,
    }
    if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )
