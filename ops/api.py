"""The ops HTTP API and its web console: the ``erpbridge dlq`` actions over HTTP, by role.

``erpbridge ops serve``. Bearer tokens or single sign-on JWTs (:mod:`ops.auth`); roles:

- viewer: list and show failure records (masked), read the audit trail;
- operator: and dry runs and replays, and releasing a claim held over budget;
- admin: and purge, and unmasked views.

Requests are read by :mod:`ops.requests` (typed, strict JSON) and refused in one shape with a
4xx; a service that does not answer is a 503. Every call that reaches a handler is audited,
refusals included (``api.denied``, or the action with outcome ``refused``), and a request refused
before any handler (malformed, too long, unknown path) by :mod:`ops.request_audit`.

The console (``/``) is server-rendered HTML, no build step: sign in with a token (kept in a
same-site, HTTP-only cookie), list and filter failures, open one, preview a replay (dry run),
replay with confirmation, follow a claim's journey (and release it when it is held over budget),
read the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from books.ingest import sync
from books.journey import Journey, search, trace
from books.store import BooksSettings, Store
from erpbridge.config import Settings
from erpbridge.refusal import Refusal
from erpbridge.registry.client import RegistryUnavailable
from erpbridge.topics import Topics
from ops.audit import ANONYMOUS, Actor, AuditTrail, Role, new_action_id, verify
from ops.auth import Authenticator, Forbidden, OpsSettings, Unauthorized, require
from ops.budgets import NotHeld, release
from ops.dlq import Failed, Selection, Summary, describe, failures, find, purge, row
from ops.locks import Busy
from ops.masking import mask
from ops.openapi import openapi_document
from ops.replay import ReplayPlan, ReplayReport, not_a_target, replay
from ops.request_audit import AUDITED, RefusalRecorder, access_log_auditing
from ops.requests import (
    MAX_BODY_BYTES,
    ClaimsQuery,
    FailuresQuery,
    PurgeBody,
    ReleaseBody,
    ReplayBody,
    ShowQuery,
    read_body,
    read_form,
    read_query,
)

COOKIE = "erpbridge_ops"
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "console"),
                        autoescape=select_autoescape(["html"]))  # fmt: skip
Handler = Callable[[web.Request, Actor], Awaitable[web.StreamResponse]]
log = logging.getLogger("erpbridge.ops")


class OpsApi:
    def __init__(self, settings: Settings, config: OpsSettings) -> None:
        self.settings, self.config = settings, config
        self.auth = Authenticator(config)
        self.trail = AuditTrail(settings, keep_clients=True)  # it appends at every call
        self.refusals = RefusalRecorder(self.trail.append)
        self._books_lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_answer_errors], client_max_size=MAX_BODY_BYTES + 1)
        guarded = self._guarded
        app.router.add_get("/api/failures", guarded(Role.VIEWER, "api.failures")(self.failures))
        app.router.add_get("/api/failures/{where}",
                           guarded(Role.VIEWER, "api.failure")(self.failure))  # fmt: skip
        app.router.add_post("/api/replay", guarded(Role.OPERATOR, "api.replay")(self.replay))
        app.router.add_post("/api/purge", guarded(Role.ADMIN, "api.purge")(self.purge))
        app.router.add_post("/api/budget/release",
                            guarded(Role.OPERATOR, "api.budget.release")(self.release))  # fmt: skip
        app.router.add_get("/api/audit", guarded(Role.VIEWER, "api.audit")(self.audit))
        app.router.add_get("/api/claims", guarded(Role.VIEWER, "api.claims")(self.claims))
        app.router.add_get("/api/claims/{asked}",
                           guarded(Role.VIEWER, "api.claim")(self.claim))  # fmt: skip
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/favicon.ico", self.no_icon)  # every browser asks: not a refusal
        app.router.add_get("/", self.console_home)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        pages = (  # method, path, role, audited action, handler
            ("GET", "/console/failures", Role.VIEWER, "console.failures", self.console_failures),
            ("GET", "/console/failures/{where}", Role.VIEWER, "console.failure",
             self.console_failure),
            ("POST", "/console/replay", Role.OPERATOR, "console.replay", self.console_replay),
            ("GET", "/console/audit", Role.VIEWER, "console.audit", self.console_audit),
            ("GET", "/console/claims", Role.VIEWER, "console.claims", self.console_claims),
            ("GET", "/console/claims/{asked}", Role.VIEWER, "console.claim", self.console_claim),
            ("POST", "/console/claims/{asked}/release", Role.OPERATOR, "console.budget.release",
             self.console_release),
        )  # fmt: skip
        for method, path, role, action, handler in pages:
            app.router.add_route(method, path, guarded(role, action, html=True)(handler))
        return app

    # -- authentication, roles and the audit of every call -------------------------------------
    def _guarded(self, role: Role, action: str,
                 html: bool = False) -> Callable[[Handler], Callable[..., Any]]:  # fmt: skip
        """Sign-in and role first; then the handler, which audits what it did. A refusal (no or
        a bad credential, a short role, a request that does not read) or a failure is audited
        here, so every call leaves a record."""

        def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            @functools.wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                header = request.headers.get("Authorization")
                if header is None and COOKIE in request.cookies:
                    header = f"Bearer {request.cookies[COOKIE]}"
                actor: Actor | None = None
                request[AUDITED] = True
                where = {"path": request.path[:200], "needs": role}
                try:
                    actor = self.auth.actor(header)
                    require(actor, role)
                    if request.method == "POST" and html:
                        _same_origin(request)
                    return await handler(request, actor)
                except (Unauthorized, Forbidden) as exc:
                    status = 401 if isinstance(exc, Unauthorized) else 403
                    await self._audit(actor or ANONYMOUS, "api.denied", where, outcome="refused",
                                      detail=f"{status}: {exc}")  # fmt: skip
                    if html and status == 401:
                        raise web.HTTPSeeOther("/?error=sign+in+first") from None
                    raise Refusal(status, "unauthorized" if status == 401 else "forbidden",
                                  str(exc)) from None  # fmt: skip
                except (Refusal, web.HTTPException) as exc:  # a 413 reading the body, a redirect
                    if exc.status >= 400:
                        await self._audit(actor or ANONYMOUS, action, where, outcome="refused",
                                          detail=_refused(exc))  # fmt: skip
                    raise
                except Exception as exc:
                    with contextlib.suppress(Exception):  # the trail may be what is down
                        await self._audit(actor or ANONYMOUS, action, where, outcome="failed",
                                          detail=f"{type(exc).__name__}: {exc}"[:500])  # fmt: skip
                    raise

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
        query = read_query(FailuresQuery, request.query)
        unmask = _unmask(query.unmask, actor)
        selection = query.selection()
        listed = await asyncio.to_thread(self._list, selection, unmask, query.limit)
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
        where = request.match_info["where"]
        unmask = _unmask(read_query(ShowQuery, request.query).unmask, actor)
        found = await self._find(where)
        await self._audit(
            actor,
            "api.failure",
            {"where": where},
            {"found": int(found is not None), "unmasked": int(unmask)},
        )
        if found is None:
            raise Refusal(404, "not_found", f"no failure record at {where}")
        return _ok(describe(found, unmask))

    async def _find(self, where: str) -> Failed | None:
        try:
            return await asyncio.to_thread(find, self.settings, where)
        except ValueError as exc:
            raise Refusal(400, "bad_request", str(exc)) from None

    async def replay(self, request: web.Request, actor: Actor) -> web.Response:
        body = read_body(ReplayBody, await request.read())
        plan = _plan(body, self.settings)
        report = await self._replay(plan, actor)  # audits itself
        return _ok({"action_id": report.action_id, "dry_run": plan.dry_run, **report.counts(),
                    "destinations": dict(report.destinations), "reasons": dict(report.reasons),
                    "plan": report.plan if plan.dry_run else []})  # fmt: skip

    async def _replay(self, plan: ReplayPlan, actor: Actor) -> ReplayReport:
        try:
            return await asyncio.to_thread(replay, self.settings, plan, actor)
        except Busy as exc:
            raise Refusal(409, "replay_in_progress", str(exc), retry_after_s=5) from None

    async def purge(self, request: web.Request, actor: Actor) -> web.Response:
        body = read_body(PurgeBody, await request.read())
        deleted = await asyncio.to_thread(purge, self.settings, body.topic)
        await self._audit(actor, "api.purge", {"topic": body.topic}, {"deleted": deleted})
        return _ok({"deleted": deleted})

    async def audit(self, request: web.Request, actor: Actor) -> web.Response:
        records = await asyncio.to_thread(self.trail.records)
        verdict = await asyncio.to_thread(verify, records)
        await self._audit(actor, "api.audit", {}, {"records": len(records)})
        return _ok({"verified": verdict.ok, "verdict": verdict.describe(),
                    "records": [{**r, "at": r["at"].isoformat()} for r in records]})  # fmt: skip

    # -- claim journeys (books.journey) ---------------------------------------------------------
    async def claim(self, request: web.Request, actor: Actor) -> web.Response:
        asked = _asked(request)
        found = await self._trace(asked)
        await self._audit(actor, "api.claim", {"asked": asked}, {"events": len(found.events)})
        if not found.events:
            raise Refusal(404, "not_found", f"nothing in the books concerns {asked}")
        return _ok(found.to_json())

    async def claims(self, request: web.Request, actor: Actor) -> web.Response:
        query = read_query(ClaimsQuery, request.query)
        listed = await self._search(query)
        await self._audit(actor, "api.claims", query.model_dump(mode="json", by_alias=True),
                          {"claims": len(listed)})  # fmt: skip
        return _ok({"claims": listed})

    async def console_claims(self, request: web.Request, actor: Actor) -> web.Response:
        asked = request.query.get("claim", "").strip()
        if asked:
            raise web.HTTPSeeOther(f"/console/claims/{quote(asked[:200], safe='')}")
        query = read_query(ClaimsQuery, _filled(request.query))
        listed = await self._search(query) if query.employee or query.start else None
        await self._audit(actor, "console.claims", query.model_dump(mode="json", by_alias=True),
                          {"claims": len(listed or ())})  # fmt: skip
        return _page("claims.html", actor=actor, listed=listed, query=dict(request.query))

    async def console_claim(self, request: web.Request, actor: Actor) -> web.Response:
        asked = _asked(request)
        found = await self._trace(asked)
        await self._audit(actor, "console.claim", {"asked": asked},
                          {"events": len(found.events)})  # fmt: skip
        if not found.events:
            raise Refusal(404, "not_found", f"nothing in the books concerns {asked}")
        return _page("claim.html", actor=actor, journey=found, stages=found.stages(),
                     held=found.held_over_budget() if actor.role.allows(Role.OPERATOR) else None,
                     released=request.query.get("released") == "1")  # fmt: skip

    # -- budget holds (ops.budgets) --------------------------------------------------------------
    async def release(self, request: web.Request, actor: Actor) -> web.Response:
        body = read_body(ReleaseBody, await request.read())
        record = await self._release(body, actor)
        return _ok({"claim_id": body.claim_id, "outcome": "released",
                    "action_id": record["action_id"], "detail": record["detail"]})  # fmt: skip

    async def console_release(self, request: web.Request, actor: Actor) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        body = read_form(ReleaseBody, {**_filled(form), "claim_id": _asked(request)})
        await self._release(body, actor)
        where = quote(body.claim_id, safe="")
        raise web.HTTPSeeOther(f"/console/claims/{where}?released=1")

    async def _release(self, body: ReleaseBody, actor: Actor) -> dict[str, Any]:
        """The release, audited by :func:`ops.budgets.release` (``budget.release``), refusals
        too: a claim that is not held over budget is a 409."""
        try:
            return await asyncio.to_thread(release, self.settings, body.claim_id, actor,
                                           body.reason)  # fmt: skip
        except NotHeld as exc:
            raise Refusal(409, "not_held", str(exc)) from None

    async def _trace(self, asked: str) -> Journey:
        def look() -> Journey:
            with self._books() as store:
                return trace(store, asked)

        async with self._books_lock:
            return await asyncio.to_thread(look)

    async def _search(self, query: ClaimsQuery) -> list[dict[str, Any]]:
        def look() -> list[dict[str, Any]]:
            with self._books() as store:
                return search(store, query.employee, query.start, query.end, query.limit)

        async with self._books_lock:
            return await asyncio.to_thread(look)

    @contextlib.contextmanager
    def _books(self) -> Any:
        """The books brought up to date (an embedded store is this server's alone; a books
        follower beside it needs PostgreSQL: ERPBRIDGE_BOOKS_URL)."""
        config = BooksSettings()
        try:
            store = Store(config)
        except duckdb.IOException as exc:
            raise Refusal(
                503,
                "unavailable",
                f"the books are held by another process ({exc}); "
                "share them through PostgreSQL (ERPBRIDGE_BOOKS_URL)",
            ) from None
        try:
            sync(self.settings, config, store)
            yield store
        finally:
            store.close()

    async def healthz(self, _: web.Request) -> web.Response:
        return _ok({"status": "ok"})

    async def no_icon(self, _: web.Request) -> web.Response:
        return web.Response(status=204)

    async def openapi(self, _: web.Request) -> web.Response:
        return _ok(openapi_document())

    # -- the console ----------------------------------------------------------------------------
    async def console_home(self, request: web.Request) -> web.Response:
        return _page("login.html", error=request.query.get("error"))

    async def login(self, request: web.Request) -> web.Response:
        request[AUDITED] = True
        form = await request.post()
        token = str(form.get("token", ""))
        try:
            actor = self.auth.actor(f"Bearer {token}")
        except (Unauthorized, Forbidden) as exc:
            await self._audit(ANONYMOUS, "console.login", {},
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
        query = read_query(FailuresQuery, _filled(request.query))
        unmask, selection = _unmask(query.unmask, actor), query.selection()
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
        where = request.match_info["where"]
        unmask = _unmask(read_query(ShowQuery, request.query).unmask, actor)
        found = await self._find(where)
        await self._audit(
            actor, "console.failure", {"where": where}, {"found": int(found is not None)}
        )
        if found is None:
            raise Refusal(404, "not_found", f"no failure record at {where}")
        shown = describe(found, unmask)
        original = json.dumps(shown["original"], ensure_ascii=False, indent=2, default=str)
        return _page("failure.html", actor=actor, where=where, shown=shown, original=original)

    async def console_replay(self, request: web.Request, actor: Actor) -> web.Response:
        """The console's form: a replay is a dry run unless its confirmation says ``yes``."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        fields = {k: v for k, v in _filled(form).items() if k not in ("confirm", "dry_run")}
        if "set" in fields:
            fields["set"] = _fix_ups(fields["set"])
        body = read_form(ReplayBody, {**fields, "dry_run": form.get("confirm") != "yes"})
        plan = _plan(body, self.settings)
        report = await self._replay(plan, actor)
        return _page("replay.html", actor=actor, plan=plan, report=report, form=form)

    async def console_audit(self, request: web.Request, actor: Actor) -> web.Response:
        records = await asyncio.to_thread(self.trail.records)
        verdict = await asyncio.to_thread(verify, records)
        await self._audit(actor, "console.audit", {}, {"records": len(records)})
        return _page("audit.html", actor=actor, records=list(reversed(records)),
                     verdict=verdict)  # fmt: skip


@web.middleware
async def _answer_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every refusal in the documented shape (an HTML page on the console), and never a 5xx
    with a traceback: the broker, Redis or the registry not answering is a 503 to retry."""
    console = request.path.startswith("/console/")
    try:
        return await handler(request)
    except Refusal as refused:
        return _refusal(refused, console)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "bad_request")  # fmt: skip
        return _refusal(Refusal(exc.status, code, exc.reason), console)
    except (KafkaError, RedisError, RegistryUnavailable) as exc:
        log.error("a service did not answer stage=ops path=%s error=%s: %s", request.path[:200],
                  type(exc).__name__, exc)  # fmt: skip
        return _refusal(Refusal(503, "unavailable", f"{type(exc).__name__}: {exc}"[:300],
                                       retry_after_s=5), console)  # fmt: skip
    except Exception as exc:  # our bug: logged whole, answered without a trace
        log.exception("internal error stage=ops path=%s", request.path[:200])
        bug = Refusal(500, "internal_error", f"{type(exc).__name__}; the ops server's "
                             "log has the details")  # fmt: skip
        return _refusal(bug, console)


def _refusal(refused: Refusal, console: bool) -> web.Response:
    if console:
        page = TEMPLATES.get_template("error.html").render(refused=refused)
        return web.Response(text=page, status=refused.status, content_type="text/html",
                            headers=refused.headers())  # fmt: skip
    return web.json_response(refused.body(), status=refused.status, headers=refused.headers())


def _refused(exc: Refusal | web.HTTPException) -> str:
    """A refusal as the audit trail's detail."""
    if isinstance(exc, Refusal):
        return f"{exc.status} {exc.code}: {exc.message}"[:500]
    return f"{exc.status}: {exc.reason}"


def _plan(body: ReplayBody, settings: Settings) -> ReplayPlan:
    if why := not_a_target(Topics(settings.topic_prefix), body.to):
        raise Refusal(422, "unknown_topic", f"to: {why}",
                      [{"field": "to", "message": "not a replay target"}])  # fmt: skip
    fix_ups = {k: "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in body.set.items()}  # fmt: skip
    return ReplayPlan(selection=body.selection(), action_id=body.action_id or new_action_id(),
                      target=body.to, set_fields=fix_ups, dry_run=body.dry_run, rate=body.rate,
                      max_replays=body.max_replays, resume=body.action_id is not None)  # fmt: skip


def _filled(form: Any) -> dict[str, Any]:
    """A console form's fields that were filled in (an empty input means no filter)."""
    found: dict[str, Any] = {}
    for key in set(form.keys()):
        values = [v for v in (form.getall(key) if hasattr(form, "getall") else [form[key]]) if v]
        if values:
            found[key] = values if key == "header" else values[-1]
    return found


def _fix_ups(text: str) -> dict[str, str]:
    """``lines.0.account_code=5.2.2, other=x``, as the console's fix-up field takes them."""
    return dict(part.strip().split("=", 1) for part in text.split(",") if "=" in part)


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


def _asked(request: web.Request) -> str:
    asked = request.match_info["asked"].strip()
    if not asked or len(asked) > 200:
        raise Refusal(400, "bad_request", "name a claim id, invoice number, posting id, document "
                      "number or event id of at most 200 characters")  # fmt: skip
    return asked


def _unmask(wanted: bool, actor: Actor) -> bool:
    if wanted:
        require(actor, Role.ADMIN)
    return wanted


def serve(settings: Settings, config: OpsSettings) -> None:
    api = OpsApi(settings, config)
    web.run_app(api.app(), host=config.host, port=config.port, print=lambda *_: None,
                access_log_class=access_log_auditing(api.refusals),
                shutdown_timeout=settings.shutdown_grace_s)  # fmt: skip
