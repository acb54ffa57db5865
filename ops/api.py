"""The ops HTTP API and its web console: the ``erpbridge dlq`` actions over HTTP, by role.

``erpbridge ops serve``. Bearer tokens or single sign-on JWTs (:mod:`ops.auth`); roles:

- viewer: list and show failure records (masked), read the audit trail;
- operator: and dry runs and replays;
- admin: and purge, and unmasked views.

Every call is audited, refusals included (``api.denied``). The console (``/``) is server-rendered
HTML, no build step: sign in with a token (kept in a same-site, HTTP-only cookie), list and filter
failures, open one, preview a replay (dry run), replay with confirmation, read the audit trail.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from erpbridge.config import Settings
from ops.audit import Actor, AuditTrail, Role, verify
from ops.auth import Authenticator, Forbidden, OpsSettings, Unauthorized, require
from ops.dlq import Selection, Summary, describe, failures, find, purge, row
from ops.masking import mask
from ops.replay import ReplayPlan, replay

COOKIE = "erpbridge_ops"
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "console"),
                        autoescape=select_autoescape(["html"]))  # fmt: skip
Handler = Callable[[web.Request, Actor], Awaitable[web.StreamResponse]]


class OpsApi:
    def __init__(self, settings: Settings, config: OpsSettings) -> None:
        self.settings, self.config = settings, config
        self.auth = Authenticator(config)
        self.trail = AuditTrail(settings)

    def app(self) -> web.Application:
        app = web.Application()
        guarded = self._guarded
        app.router.add_get("/api/failures", guarded(Role.VIEWER, "api.failures")(self.failures))
        app.router.add_get("/api/failures/{where}",
                           guarded(Role.VIEWER, "api.failure")(self.failure))  # fmt: skip
        app.router.add_post("/api/replay", guarded(Role.OPERATOR, "api.replay")(self.replay))
        app.router.add_post("/api/purge", guarded(Role.ADMIN, "api.purge")(self.purge))
        app.router.add_get("/api/audit", guarded(Role.VIEWER, "api.audit")(self.audit))
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/", self.console_home)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get(
            "/console/failures",
            guarded(Role.VIEWER, "console.failures", html=True)(self.console_failures),
        )
        app.router.add_get(
            "/console/failures/{where}",
            guarded(Role.VIEWER, "console.failure", html=True)(self.console_failure),
        )
        app.router.add_post(
            "/console/replay",
            guarded(Role.OPERATOR, "console.replay", html=True)(self.console_replay),
        )
        app.router.add_get(
            "/console/audit", guarded(Role.VIEWER, "console.audit", html=True)(self.console_audit)
        )
        return app

    # -- authentication, roles and the audit of every call -------------------------------------
    def _guarded(self, role: Role, action: str,
                 html: bool = False) -> Callable[[Handler], Callable[..., Any]]:  # fmt: skip
        def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            @functools.wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                header = request.headers.get("Authorization")
                if header is None and COOKIE in request.cookies:
                    header = f"Bearer {request.cookies[COOKIE]}"
                actor: Actor | None = None
                try:
                    actor = self.auth.actor(header)
                    require(actor, role)
                    if request.method == "POST" and html:
                        _same_origin(request)
                    return await handler(request, actor)
                except (Unauthorized, Forbidden) as exc:
                    status = 401 if isinstance(exc, Unauthorized) else 403
                    await self._audit(actor or Actor("anonymous", Role.NONE), "api.denied",
                                      {"path": request.path, "needs": role}, outcome="refused",
                                      detail=f"{status}: {exc}")  # fmt: skip
                    if html and status == 401:
                        raise web.HTTPSeeOther("/?error=sign+in+first") from None
                    return web.json_response({"error": "unauthorized" if status == 401
                                              else "forbidden", "message": str(exc)},
                                             status=status)  # fmt: skip

            return guarded

        return wrap

    async def _audit(self, actor: Actor, action: str, selection: dict[str, Any],
                     counts: dict[str, int] | None = None, outcome: str = "ok",
                     detail: str | None = None, dry_run: bool = False) -> None:  # fmt: skip
        await asyncio.to_thread(self.trail.append, actor, action, selection=selection,
                                counts=counts, outcome=outcome, detail=detail,
                                dry_run=dry_run)  # fmt: skip

    # -- the API --------------------------------------------------------------------------------
    async def failures(self, request: web.Request, actor: Actor) -> web.Response:
        selection, unmask = _selection(request.query), _unmask(request.query, actor)
        listed = await asyncio.to_thread(self._list, selection, unmask,
                                         int(request.query.get("limit", "100")))  # fmt: skip
        await self._audit(
            actor,
            "api.failures",
            selection.describe(),
            {"selected": listed["summary"]["total"], "unmasked": int(unmask)},
        )
        return _ok(listed)

    def _list(self, selection: Selection, unmask: bool, limit: int) -> dict[str, Any]:
        summary, rows = Summary(), list[dict[str, Any]]()
        now = datetime.datetime.now(datetime.UTC)
        for found in failures(self.settings, selection):
            summary.add(found, now)
            if not limit or len(rows) < limit:
                rows.append(row(found) if unmask else mask(row(found)))
        return {"summary": summary.to_json(), "records": rows}

    async def failure(self, request: web.Request, actor: Actor) -> web.Response:
        where, unmask = request.match_info["where"], _unmask(request.query, actor)
        try:
            found = await asyncio.to_thread(find, self.settings, where)
        except ValueError as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        await self._audit(
            actor,
            "api.failure",
            {"where": where},
            {"found": int(found is not None), "unmasked": int(unmask)},
        )
        if found is None:
            return web.json_response({"error": "not_found", "message": where}, status=404)
        return _ok(describe(found, unmask))

    async def replay(self, request: web.Request, actor: Actor) -> web.Response:
        try:
            body = await request.json()
            plan = _plan(body)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": "bad_request", "message": str(exc)}, status=400)
        report = await asyncio.to_thread(replay, self.settings, plan, actor)  # audits itself
        return _ok({"action_id": report.action_id, "dry_run": plan.dry_run, **report.counts(),
                    "destinations": dict(report.destinations), "reasons": dict(report.reasons),
                    "plan": report.plan if plan.dry_run else []})  # fmt: skip

    async def purge(self, request: web.Request, actor: Actor) -> web.Response:
        body = await request.json()
        topic = str(body.get("topic", ""))
        if topic not in ("rejected", "erp_dead_letter", "feedback_dead_letter", "quarantine"):
            return web.json_response({"error": "bad_request", "message": "topic?"}, status=400)
        deleted = await asyncio.to_thread(purge, self.settings, topic)
        await self._audit(actor, "api.purge", {"topic": topic}, {"deleted": deleted})
        return _ok({"deleted": deleted})

    async def audit(self, request: web.Request, actor: Actor) -> web.Response:
        records = await asyncio.to_thread(self.trail.records)
        verdict = verify(records)
        await self._audit(actor, "api.audit", {}, {"records": len(records)})
        return _ok({"verified": verdict.ok, "verdict": verdict.describe(),
                    "records": [{**r, "at": r["at"].isoformat()} for r in records]})  # fmt: skip

    async def healthz(self, _: web.Request) -> web.Response:
        return _ok({"status": "ok"})

    async def openapi(self, _: web.Request) -> web.Response:
        return _ok(openapi_document())

    # -- the console ----------------------------------------------------------------------------
    async def console_home(self, request: web.Request) -> web.Response:
        return _page("login.html", error=request.query.get("error"))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        try:
            actor = self.auth.actor(f"Bearer {token}")
        except (Unauthorized, Forbidden) as exc:
            await self._audit(Actor("anonymous", Role.NONE), "console.login", {},
                              outcome="refused", detail=str(exc))  # fmt: skip
            raise web.HTTPSeeOther("/?error=that+token+is+not+accepted") from None
        await self._audit(actor, "console.login", {})
        response = web.HTTPSeeOther("/console/failures")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                            secure=request.secure, path="/")  # fmt: skip
        raise response

    async def logout(self, _: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def console_failures(self, request: web.Request, actor: Actor) -> web.Response:
        selection, unmask = _selection(request.query), _unmask(request.query, actor)
        listed = await asyncio.to_thread(self._list, selection, unmask, 200)
        await self._audit(
            actor,
            "console.failures",
            selection.describe(),
            {"selected": listed["summary"]["total"]},
        )
        return _page("failures.html", actor=actor, listed=listed, query=dict(request.query),
                     can_replay=actor.role.allows(Role.OPERATOR))  # fmt: skip

    async def console_failure(self, request: web.Request, actor: Actor) -> web.Response:
        where, unmask = request.match_info["where"], _unmask(request.query, actor)
        found = await asyncio.to_thread(find, self.settings, where)
        await self._audit(
            actor, "console.failure", {"where": where}, {"found": int(found is not None)}
        )
        if found is None:
            raise web.HTTPNotFound(text=f"no failure record at {where}")
        shown = describe(found, unmask)
        original = json.dumps(shown["original"], ensure_ascii=False, indent=2, default=str)
        return _page("failure.html", actor=actor, where=where, shown=shown, original=original)

    async def console_replay(self, request: web.Request, actor: Actor) -> web.Response:
        form = dict(await request.post())
        plan = _plan({**form, "dry_run": form.get("confirm") != "yes"})
        report = await asyncio.to_thread(replay, self.settings, plan, actor)
        return _page("replay.html", actor=actor, plan=plan, report=report, form=form)

    async def console_audit(self, request: web.Request, actor: Actor) -> web.Response:
        records = await asyncio.to_thread(self.trail.records)
        await self._audit(actor, "console.audit", {}, {"records": len(records)})
        return _page("audit.html", actor=actor, records=list(reversed(records)),
                     verdict=verify(records))  # fmt: skip


def _ok(body: Any) -> web.Response:
    return web.json_response(body, dumps=functools.partial(json.dumps, default=str,
                                                           ensure_ascii=False))  # fmt: skip


def _page(template: str, **context: Any) -> web.Response:
    return web.Response(text=TEMPLATES.get_template(template).render(**context),
                        content_type="text/html")  # fmt: skip


def _same_origin(request: web.Request) -> None:
    """A console form posted from another site is refused (with the same-site cookie, twice)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden(f"a form from {origin} may not act here")


def _unmask(query: Any, actor: Actor) -> bool:
    wanted = str(query.get("unmask", "")).lower() in ("1", "true", "yes")
    if wanted:
        require(actor, Role.ADMIN)
    return wanted


def _selection(query: Any) -> Selection:
    def moment(name: str) -> datetime.datetime | None:
        text = query.get(name)
        if not text:
            return None
        value = datetime.datetime.fromisoformat(str(text))
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)

    headers = {}
    for text in query.getall("header", []) if hasattr(query, "getall") else []:
        name, _, value = str(text).partition("=")
        headers[name] = value
    return Selection(topic=str(query.get("topic") or "all"),
                     reason=query.get("reason") or None, stage=query.get("stage") or None,
                     claim_id=query.get("claim_id") or None,
                     employee=query.get("employee") or None,
                     source_system=query.get("source_system") or None,
                     since=moment("since"), until=moment("until"), headers=headers)  # fmt: skip


def _plan(body: dict[str, Any]) -> ReplayPlan:
    selection = _selection(_Query(body))
    changes = body.get("set") or {}
    if isinstance(changes, str):
        changes = dict(part.split("=", 1) for part in changes.split(",") if "=" in part)
    rate = body.get("rate")
    return ReplayPlan(selection=selection, target=body.get("to") or None,
                      set_fields={str(k): str(v) for k, v in changes.items()},
                      dry_run=str(body.get("dry_run", "false")).lower() in ("1", "true", "yes"),
                      rate=float(rate) if rate not in (None, "") else None,
                      max_replays=int(body.get("max_replays") or 3))  # fmt: skip


class _Query(dict[str, Any]):
    def getall(self, name: str, default: list[Any]) -> list[Any]:
        value = self.get(name)
        return default if value is None else value if isinstance(value, list) else [value]


def openapi_document() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    filters = [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
               for name in ("topic", "reason", "stage", "claim_id", "employee", "source_system",
                            "since", "until", "header", "unmask", "limit")]  # fmt: skip
    errors = {"401": {"description": "no or unknown credential"},
              "403": {"description": "the role is short of what this needs"}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "erpbridge ops API", "version": "1",
                 "description": "Failure records, replay and the audit trail, by role."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": bearer,
        "paths": {
            "/api/failures": {"get": {"summary": "List failure records (viewer; unmask: admin)",
                                      "parameters": filters,
                                      "responses": {"200": {"description": "summary, records"},
                                                    **errors}}},
            "/api/failures/{where}": {"get": {
                "summary": "One failure record, topic[partition]@offset (viewer)",
                "parameters": [{"name": "where", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the record"}, "404": {
                    "description": "none there"}, **errors}}},
            "/api/replay": {"post": {
                "summary": "Replay a selection (operator); dry_run previews it",
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "topic": {"type": "string"}, "reason": {"type": "string"},
                        "stage": {"type": "string"}, "claim_id": {"type": "string"},
                        "to": {"type": "string"}, "set": {"type": "object"},
                        "dry_run": {"type": "boolean"}, "rate": {"type": "number"},
                        "max_replays": {"type": "integer"}}}}}},
                "responses": {"200": {"description": "counts"}, **errors}}},
            "/api/purge": {"post": {"summary": "Delete a failure topic's records so far (admin)",
                                    "responses": {"200": {"description": "deleted"}, **errors}}},
            "/api/audit": {"get": {"summary": "The audit trail and its verification (viewer)",
                                   "responses": {"200": {"description": "records"}, **errors}}},
        },
    }  # fmt: skip


def serve(settings: Settings, config: OpsSettings) -> None:
    web.run_app(OpsApi(settings, config).app(), host=config.host, port=config.port,
                print=lambda *_: None)  # fmt: skip
