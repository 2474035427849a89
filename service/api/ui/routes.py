"""The read-only status page at ``/ui``: server-rendered HTML, no build step (docs/ui.md).

Pages: the caller's requests (``GET /ui``, newest first, filtered by state and service
principal, cursor-paged), one request's timeline (``GET /ui/requests/{id}``) and the live queue
counters (``GET /ui/counters``, JSON, polled by a few lines of inline JavaScript).

Authentication is the API's own: the :class:`SessionAuthenticator` below joins the
authenticator chain of :func:`service.api.auth.keys.auth_middleware`, so a browser holding a session
cookie, or any client sending ``Authorization: Bearer``, gets the same caller name and the same
per-caller policy as on ``/v1``. The session comes from the key prompt: ``POST /ui/login`` with
an API key stores ``{queue}:ui-session:{sha256(session id)} -> caller name`` in Redis for 8 hours
(never the key) and sets the session id as an ``HttpOnly; SameSite=Strict; Path=/ui`` cookie,
``Secure`` over https or with ``PROVISIONER_UI_COOKIE_SECURE``. The two POSTs (login, logout)
also require a same-host ``Origin`` or ``Referer`` header (CSRF).

:func:`ui_middleware` (between the problem and the auth middlewares) turns errors on ``/ui``
paths into HTML: an unauthenticated page request is a 303 to ``/ui/login``, other errors an
escaped error page, never a stack trace. Every value placed in the HTML goes through
:func:`html.escape`; responses carry a strict Content-Security-Policy with a per-response nonce
for the one inline style sheet and script.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import UUID

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from service.api.auth.keys import CALLER, TOKEN_ROLES, ApiKeyAuthenticator
from service.api.auth.policy import Permission
from service.api.metrics import queue_counters
from service.api.middleware import REQUEST_ID
from service.api.problems import Problem
from service.api.state import AUTHENTICATORS, POLICY, REDIS, SETTINGS, STORE
from service.core.errors import StoreUnavailable
from service.core.models import Record, State
from service.core.store import guarded

__all__ = [
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "UI_PREFIX",
    "SessionAuthenticator",
    "routes",
    "ui_middleware",
]

UI_PREFIX = "/ui"
SESSION_COOKIE = "provisioner_ui_session"
SESSION_TTL_S = 8 * 3600
PAGE_SIZE = 50
COUNTERS_REFRESH_MS = 5000
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_KEY_CHARS = 4096

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


# sessions ------------------------------------------------------------------------------------
def _is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def _session_key(request: web.Request, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return request.app[STORE].keys.ui_session(digest)


def _session_id(request: web.Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    return value if _SESSION_ID.match(value) else None


class SessionAuthenticator:
    """Accepts the status page's session cookie, on ``/ui`` paths only (never on ``/v1``)."""

    async def authenticate(self, request: web.Request) -> str | None:
        if not _is_ui(request.path):
            return None
        session_id = _session_id(request)
        if session_id is None:
            return None
        key = _session_key(request, session_id)
        raw = await guarded(lambda: request.app[REDIS].get(key))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)


def _same_origin(request: web.Request) -> bool:
    """CSRF check for the POSTs: an ``Origin`` (else ``Referer``) naming this host."""
    source = request.headers.get(hdrs.ORIGIN) or request.headers.get(hdrs.REFERER)
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == request.host.lower()


def _can_read(request: web.Request, caller: str) -> bool:
    granted = request.app[POLICY].permissions(caller, request.get(TOKEN_ROLES))
    return Permission.READ in granted


def _api_keys(request: web.Request) -> ApiKeyAuthenticator | None:
    for authenticator in request.app[AUTHENTICATORS]:
        if isinstance(authenticator, ApiKeyAuthenticator):
            return authenticator
    return None


# formatting ----------------------------------------------------------------------------------
def e(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute; None is a dash."""
    if value is None or value == "":
        return "&ndash;"
    return html.escape(str(value), quote=True)


def _when(value: datetime | None, *, time_only: bool = False) -> str:
    if value is None:
        return e(None)
    text = value.strftime("%H:%M:%S.%f")[:-3] if time_only else value.strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{e(value.isoformat())}">{e(text)}</time>'


def _duration(ms: int | None) -> str:
    if ms is None:
        return e(None)
    return e(f"{ms} ms" if ms < 1000 else f"{ms / 1000:.2f} s")


def _badge(value: str) -> str:
    return f'<span class="badge b-{e(value)}">{e(value)}</span>'


def _href(path: str, **query: str | None) -> str:
    params = {k: v for k, v in query.items() if v}
    return e(path + ("?" + urlencode(params) if params else ""))


def _rows(rows: Iterable[str], columns: int, empty: str) -> str:
    body = "".join(rows)
    return body or f'<tr><td colspan="{columns}" class="empty">{e(empty)}</td></tr>'


# layout --------------------------------------------------------------------------------------
_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:#fff}
header{display:flex;align-items:center;gap:16px;padding:10px 24px;border-bottom:1px solid
var(--line);background:var(--bg)}
header h1{font-size:16px;margin:0;flex:1}header h1 a{color:inherit;text-decoration:none}
header .who{color:var(--muted)}
main{padding:16px 24px}
h2{font-size:15px;margin:20px 0 8px}
a{color:var(--accent)}
button{font:inherit;padding:4px 12px;border:1px solid var(--line);border-radius:6px;
background:#fff;cursor:pointer}
button.primary{background:#1f883d;border-color:#1a7f37;color:#fff}
input,select{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px}
.counters{display:flex;gap:12px;margin:4px 0 16px}
.counter{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:150px}
.counter b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.counter span{color:var(--muted);font-size:12px}
.counter ul{margin:4px 0 0;padding:0;list-style:none;font-size:12px;color:var(--muted)}
.counter ul:empty{display:none}.counter li .mono{color:var(--fg)}
.updated{color:var(--muted);font-size:12px;align-self:flex-end}
form.filters{display:flex;gap:8px;align-items:center;margin-bottom:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12px;color:var(--muted);white-space:nowrap}
td.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
td.empty{color:var(--muted);text-align:center;padding:16px}
table.requests td{white-space:nowrap}table.requests td.wrap{white-space:normal}
table.timeline td.mono{white-space:nowrap}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;
background:#eaeef2;color:#424a53}
.b-succeeded,.b-adopted{background:#dafbe1;color:#116329}
.b-failed{background:#ffebe9;color:#a40e26}
.b-running,.b-retrying{background:#ddf4ff;color:#0550ae}
.b-queued,.b-requeued,.b-skipped{background:#fff8c5;color:#7d4e00}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.summary dt{color:var(--muted)}dl.summary dd{margin:0}
.error{border:1px solid #ff8182;background:#fff5f5;border-radius:8px;padding:10px 14px;
margin:12px 0}
.error h2{margin:0 0 6px;color:#a40e26}
.notice{border:1px solid #d4a72c;background:#fff8c5;border-radius:8px;padding:8px 12px;
margin:8px 0}
.pager{margin-top:12px}
.login{max-width:420px;margin:60px auto;border:1px solid var(--line);border-radius:8px;
padding:20px 24px}
.login input{width:100%;margin:6px 0 12px}
"""

_JS = """
(function(){
  var box=document.getElementById('counters');if(!box){return;}
  function tick(){
    fetch('/ui/counters',{credentials:'same-origin',headers:{'Accept':'application/json'}})
    .then(function(r){
      if(r.status===401){window.location.assign('/ui/login');return null;}
      return r.ok?r.json():null;})
    .then(function(data){
      if(!data){return;}
      Object.keys(data).forEach(function(k){
        var el=box.querySelector('[data-counter="'+k+'"]');
        if(el){el.textContent=String(data[k]);}
      });
      var list=document.getElementById('cooldowns');
      if(list&&Array.isArray(data.cooldowns)){
        list.textContent='';
        data.cooldowns.forEach(function(c){
          var li=document.createElement('li'),t=document.createElement('span');
          t.className='mono';t.textContent=String(c.tenant);
          li.appendChild(t);
          li.appendChild(document.createTextNode(' '+Math.ceil(c.remainingS)+' s left'));
          list.appendChild(li);
        });
      }
      var when=document.getElementById('counters-updated');
      if(when){when.textContent='updated '+new Date().toISOString().slice(11,19)+' UTC';}
    }).catch(function(){});
  }
  tick();setInterval(tick,REFRESH_MS);
})();
"""

_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">$refresh
<link rel="icon" href="data:,">
<title>$title &middot; Provisioning status</title>
<style nonce="$nonce">$css</style></head>
<body><header><h1><a href="/ui">Entra provisioning orchestrator &middot; status</a></h1>
$who</header>
<main>$body</main>$script</body></html>
""")

_WHO = Template("""<span class="who">signed in as <b>$caller</b></span>
<form method="post" action="/ui/logout"><button type="submit">Sign out</button></form>""")

_COUNTERS = Template("""<section class="counters" id="counters" aria-label="Live counters">
<div class="counter"><b data-counter="queueDepth">$queueDepth</b><span>queue depth</span></div>
<div class="counter"><b data-counter="inFlight">$inFlight</b><span>in flight (running)</span></div>
<div class="counter"><b data-counter="throttleCooldowns">$throttleCooldowns</b>
<span>throttle cool-downs</span><ul id="cooldowns" aria-label="Tenants cooling down">$cooldowns</ul>
</div>
<div class="counter"><b data-counter="workersAlive">$workersAlive</b>
<span>workers alive</span></div>
<span class="updated" id="counters-updated">live, every $seconds s</span></section>""")


def _page(
    title: str,
    body: str,
    *,
    caller: str | None = None,
    status: int = 200,
    refresh_s: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A whole HTML page; ``title`` is escaped here, ``body`` must be escaped already."""
    nonce = secrets.token_urlsafe(16)
    script = ""
    if caller is not None:
        js = _JS.replace("REFRESH_MS", str(COUNTERS_REFRESH_MS))
        script = f'<script nonce="{nonce}">{js}</script>'
    text = _PAGE.substitute(
        title=e(title),
        nonce=nonce,
        css=_CSS,
        who=_WHO.substitute(caller=e(caller)) if caller is not None else "",
        body=body,
        script=script,
        refresh=f'\n<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else "",
    )
    response = web.Response(text=text, status=status, content_type="text/html", headers=headers)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return response


def _redirect(location: str) -> web.Response:
    """A 303 See Other (the answer to a POST, and to an unauthenticated page request)."""
    return web.Response(status=303, headers={"Location": location})


def _error_page(status: int, title: str, detail: str) -> web.Response:
    body = f'<div class="error"><h2>{e(title)}</h2><p>{e(detail)}</p></div>'
    body += '<p><a href="/ui">Back to the request list</a></p>'
    return _page(title, body, status=status)


async def _counters(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    counters = await guarded(lambda: queue_counters(store))
    return {
        "queueDepth": counters.queue_depth,
        "inFlight": counters.running,
        "throttleCooldowns": counters.throttle_cooldowns,
        "workersAlive": counters.workers_alive,
        "cooldowns": [
            {"tenant": tenant, "remainingS": round(seconds, 1)}
            for tenant, seconds in counters.cooldowns
        ],
    }


async def _counters_html(request: web.Request) -> str:
    values = await _counters(request)
    cooldowns = "".join(
        f"<li><span class='mono'>{e(c['tenant'])}</span> "
        f"{e(math.ceil(c['remainingS']))} s left</li>"
        for c in values.pop("cooldowns")
    )
    return _COUNTERS.substitute(
        {k: e(v) for k, v in values.items()},
        cooldowns=cooldowns,
        seconds=e(COUNTERS_REFRESH_MS // 1000),
    )


def _reader(request: web.Request) -> str:
    """The caller, when it may read; else a 403 (rendered as a page by the middleware)."""
    caller = request[CALLER]
    if not _can_read(request, caller):
        raise Problem(403, "Forbidden", "This caller lacks the 'read' permission.")
    return caller


# pages ---------------------------------------------------------------------------------------
_FILTERS = Template("""<form class="filters" method="get" action="/ui">
<label>State <select name="state">$options</select></label>
<label>Service principal <input name="servicePrincipalId" value="$principal" size="38"
placeholder="GUID"></label>
<button type="submit">Filter</button> <a href="/ui">Clear</a></form>""")

_LIST_HEAD = (
    "<tr><th>Created (UTC)</th><th>Request</th><th>State</th><th>Step</th>"
    "<th>Service principal</th><th>Template</th><th>External reference</th>"
    "<th>Attempts</th><th>Error</th><th>Updated (UTC)</th></tr>"
)


def _list_row(record: Record) -> str:
    link = f'<a href="{e("/ui/requests/" + record.id)}">{e(record.id)}</a>'
    code = record.error.code if record.error else None
    return (
        f"<tr><td>{_when(record.created_at)}</td><td class='mono'>{link}</td>"
        f"<td>{_badge(record.state.value)}</td><td>{e(record.step)}</td>"
        f"<td class='mono'>{e(record.service_principal_id)}</td><td>{e(record.template_id)}</td>"
        f"<td class='wrap'>{e(record.external_reference)}</td><td>{e(record.attempts)}</td>"
        f"<td>{e(code)}</td><td>{_when(record.updated_at)}</td></tr>"
    )


@routes.get(UI_PREFIX)
async def list_page(request: web.Request) -> web.Response:
    """The caller's requests, newest first."""
    caller = _reader(request)
    raw_state = request.query.get("state", "").strip()
    raw_principal = request.query.get("servicePrincipalId", "").strip()
    cursor = request.query.get("cursor", "").strip() or None
    problems: list[str] = []
    state: State | None = None
    principal: str | None = None
    if raw_state:
        try:
            state = State(raw_state)
        except ValueError:
            problems.append("State must be one of " + ", ".join(s.value for s in State) + ".")
    if raw_principal:
        try:
            principal = str(UUID(raw_principal))
        except ValueError:
            problems.append("The service principal id must be a GUID.")
    records: list[Record] = []
    next_cursor: str | None = None
    if not problems:
        try:
            records, next_cursor = await request.app[STORE].list(
                state=state,
                service_principal_id=principal,
                caller=caller,
                cursor=cursor,
                limit=PAGE_SIZE,
            )
        except ValueError:
            problems.append("That page cursor is not one this page made; start again.")
    options = '<option value="">any</option>' + "".join(
        f'<option value="{e(s.value)}"{" selected" if s is state else ""}>{e(s.value)}</option>'
        for s in State
    )
    body = await _counters_html(request)
    body += "<h2>Provisioning requests</h2>"
    body += _FILTERS.substitute(options=options, principal=html.escape(raw_principal, quote=True))
    body += "".join(f'<div class="notice">{e(p)}</div>' for p in problems)
    rows = _rows((_list_row(r) for r in records), 10, "No requests match.")
    body += f"<table class='requests'><thead>{_LIST_HEAD}</thead><tbody>{rows}</tbody></table>"
    pager = []
    if cursor:
        pager.append(
            f'<a href="{_href("/ui", state=raw_state, servicePrincipalId=principal)}">'
            "&laquo; Newest</a>"
        )
    if next_cursor:
        nxt = _href("/ui", state=raw_state, servicePrincipalId=principal, cursor=next_cursor)
        pager.append(f'<a href="{nxt}" rel="next">Older &raquo;</a>')
    if pager:
        body += '<p class="pager">' + " &middot; ".join(pager) + "</p>"
    return _page("Requests", body, caller=caller, status=400 if problems else 200)


_TIMELINE_HEAD = (
    "<tr><th>#</th><th>Step</th><th>Outcome</th><th>Time (UTC)</th><th>Duration</th>"
    "<th>Attempt</th><th>Graph status</th><th>Graph request-id</th><th>Client request-id</th>"
    "<th>Message</th></tr>"
)
_CALLBACKS_HEAD = (
    "<tr><th>Time (UTC)</th><th>Target</th><th>Attempt</th><th>Status</th><th>Delivered</th>"
    "<th>Error</th></tr>"
)


def _summary(record: Record) -> str:
    template = record.template_id
    if record.requested_template_id and record.requested_template_id != record.template_id:
        template = f"{record.template_id} (asked for {record.requested_template_id})"
    metadata = ", ".join(f"{k}={v}" for k, v in sorted(record.metadata.items())) or None
    pairs: list[tuple[str, str]] = [
        ("Request id", f"<span class='mono'>{e(record.id)}</span>"),
        ("State", _badge(record.state.value)),
        ("Current step", e(record.step)),
        ("Service principal", f"<span class='mono'>{e(record.service_principal_id)}</span>"),
        ("Template", e(template)),
        ("Synchronization job", f"<span class='mono'>{e(record.job_id)}</span>"),
        ("Start the job", e("yes" if record.start else "no")),
        ("Credentials sent", e("yes" if record.has_credentials else "no")),
        ("External reference", e(record.external_reference)),
        ("Metadata", e(metadata)),
        ("Callback URL", e(record.callback_url)),
        ("Attempts", e(record.attempts)),
        ("Created (UTC)", _when(record.created_at)),
        ("Updated (UTC)", _when(record.updated_at)),
    ]
    items = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="summary">{items}</dl>'


def _error_box(record: Record) -> str:
    if record.error is None:
        return ""
    err = record.error
    details = json.dumps(err.details, sort_keys=True) if err.details else None
    return (
        f'<section class="error" id="error"><h2>Failed: <span class="code">{e(err.code)}</span>'
        f"</h2><p>{e(err.message)}</p><dl class='summary'>"
        f"<dt>Graph status</dt><dd>{e(err.graph_status)}</dd>"
        f"<dt>Graph request-id</dt><dd class='mono graph-request-id'>{e(err.graph_request_id)}</dd>"
        f"<dt>Details</dt><dd class='mono'>{e(details)}</dd></dl></section>"
    )


def _timeline(record: Record) -> str:
    rows = (
        f"<tr><td>{i}</td><td>{e(h.step)}</td><td>{_badge(h.outcome.value)}</td>"
        f"<td>{_when(h.at, time_only=True)}</td><td>{_duration(h.duration_ms)}</td>"
        f"<td>{e(h.attempt)}</td><td>{e(h.graph_status)}</td>"
        f"<td class='mono'>{e(h.graph_request_id)}</td>"
        f"<td class='mono'>{e(h.client_request_id)}</td><td>{e(h.message)}</td></tr>"
        for i, h in enumerate(record.history, 1)
    )
    body = _rows(rows, 10, "No steps yet.")
    return f"<table class='timeline'><thead>{_TIMELINE_HEAD}</thead><tbody>{body}</tbody></table>"


def _callbacks(record: Record) -> str:
    rows = (
        f"<tr><td>{_when(c.at)}</td><td>{e(c.target)}</td><td>{e(c.attempt)}</td>"
        f"<td>{e(c.status)}</td><td>{e('yes' if c.delivered else 'no')}</td>"
        f"<td>{e(c.error)}</td></tr>"
        for c in record.callbacks
    )
    body = _rows(rows, 6, "No callbacks or ticket write-backs.")
    return f"<table class='callbacks'><thead>{_CALLBACKS_HEAD}</thead><tbody>{body}</tbody></table>"


@routes.get(UI_PREFIX + "/requests/{id}")
async def request_page(request: web.Request) -> web.Response:
    """One request: summary, error, step timeline and callbacks."""
    caller = _reader(request)
    request_id = request.match_info["id"]
    record = await request.app[STORE].get(request_id) if _REQUEST_ID.match(request_id) else None
    if record is None or record.caller != caller:
        raise Problem(404, "Not Found", "No provisioning request with this id.")
    body = await _counters_html(request)
    body += f"<h2>Request {e(record.id)}</h2>" + _summary(record) + _error_box(record)
    body += "<h2>Timeline</h2>" + _timeline(record)
    body += "<h2>Callbacks</h2>" + _callbacks(record)
    body += '<p><a href="/ui">&laquo; All requests</a></p>'
    refresh = None if record.state.terminal else 5
    return _page(f"Request {record.id}", body, caller=caller, refresh_s=refresh)


@routes.get(UI_PREFIX + "/counters")
async def counters(request: web.Request) -> web.Response:
    """The live queue counters, as JSON (the pages poll this)."""
    _reader(request)
    return web.json_response(await _counters(request), headers={"Cache-Control": "no-store"})


# login ---------------------------------------------------------------------------------------
_LOGIN = Template("""<form class="login" method="post" action="/ui/login">
<h2>Sign in</h2><p>Paste an API key of this service. It is checked once and not kept: the
browser gets a session cookie for 8 hours.</p>$error
<label for="apiKey">API key</label>
<input id="apiKey" name="apiKey" type="password" autocomplete="off" required autofocus>
<button class="primary" type="submit">Sign in</button></form>""")


def _login_page(error: str | None = None, status: int = 200) -> web.Response:
    notice = f'<div class="notice" role="alert">{e(error)}</div>' if error else ""
    return _page("Sign in", _LOGIN.substitute(error=notice), status=status)


@routes.get(UI_PREFIX + "/login")
async def login_page(request: web.Request) -> web.Response:
    """The key prompt (public)."""
    if await SessionAuthenticator().authenticate(request) is not None:
        return _redirect(UI_PREFIX)
    return _login_page()


@routes.post(UI_PREFIX + "/login")
async def login(request: web.Request) -> web.Response:
    """Check a pasted API key; on success a session cookie and a 303 to ``/ui``."""
    if not _same_origin(request):
        return _error_page(403, "Forbidden", "Sign in from this site's own sign-in page.")
    form = await request.post()
    key = form.get("apiKey")
    keys = _api_keys(request)
    caller = None
    if isinstance(key, str) and 0 < len(key.strip()) <= _MAX_KEY_CHARS and keys is not None:
        caller = keys.caller_for_key(key.strip())
    if caller is None:
        log.info("ui_login_failed")
        return _login_page("That API key is not valid.", status=401)
    if not _can_read(request, caller):
        return _login_page("This key's caller lacks the 'read' permission.", status=403)
    session_id = secrets.token_urlsafe(32)
    redis_key = _session_key(request, session_id)
    await guarded(lambda: request.app[REDIS].set(redis_key, caller, ex=SESSION_TTL_S))
    log.info("ui_login", caller=caller)
    response = _redirect(UI_PREFIX)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_TTL_S,
        path=UI_PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure or request.app[SETTINGS].ui_cookie_secure,
    )
    return response


@routes.post(UI_PREFIX + "/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session (its Redis key and the cookie) and go back to the key prompt."""
    if not _same_origin(request):
        return _error_page(403, "Forbidden", "Sign out from this site's own pages.")
    session_id = _session_id(request)
    if session_id is not None:
        redis_key = _session_key(request, session_id)
        await guarded(lambda: request.app[REDIS].delete(redis_key))
    response = _redirect(UI_PREFIX + "/login")
    response.del_cookie(SESSION_COOKIE, path=UI_PREFIX)
    return response


# errors and headers --------------------------------------------------------------------------
def _harden(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def _wants_json(request: web.Request) -> bool:
    return request.path == UI_PREFIX + "/counters"


@web.middleware
async def ui_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On ``/ui`` paths: 303 to the key prompt when unauthenticated, HTML error pages, no
    traces; hardening headers on every answer. Other paths pass through untouched."""
    if not _is_ui(request.path):
        return await handler(request)
    try:
        return _harden(await handler(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            _harden(exc)
            raise
        if exc.status == 404:
            return _harden(_error_page(404, "Not Found", "There is no such page."))
        return _harden(_error_page(exc.status, exc.reason, exc.reason))
    except Problem as problem:
        if problem.status == 401 and not _wants_json(request):
            return _harden(_redirect(UI_PREFIX + "/login"))
        if _wants_json(request):
            return _harden(problem.response())
        return _harden(_error_page(problem.status, problem.title, problem.detail))
    except StoreUnavailable:
        log.warning("store_unavailable", path=request.path)
        page = _error_page(503, "Service Unavailable", "Redis cannot be reached; try again.")
        page.headers["Retry-After"] = "5"
        return _harden(page)
    except Exception:
        request_id = request.get(REQUEST_ID, "")
        log.exception("unhandled_error", path=request.path, method=request.method)
        return _harden(
            _error_page(
                500,
                "Internal Server Error",
                f"An unexpected error occurred; quote request id {request_id} to support.",
            )
        )
