"""Every request passes ``authorize``: it finds the route's rule (app/scopes.py), who is asking (an API key sent as
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``, or nobody), and lets the request through when the key's scopes
and collections allow it and its quota is not spent. A missing key gets 401, a key that is wrong, revoked, expired,
of too small a scope or of other collections 403, a spent quota 429 with ``Retry-After``; all in the one error
shape, all before the route runs, so a refused request changes nothing.

While no key exists (none in ``IMGSEARCH_API_KEYS``, none created), the service is open, as on a laptop."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.scopes import ADMIN, PUBLIC, READ, Rule, rule_of
from operations.access.control import AccessControl
from operations.access.keys import ANONYMOUS, OPEN, KeyRefused, Principal
from operations.errors import AppError, Forbidden

logger = logging.getLogger(__name__)

# Declared as security schemes so Swagger UI shows an "Authorize" button; checked by hand below so that a
# missing key gives our error shape (401) and a wrong one 403.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
bearer_scheme = HTTPBearer(auto_error=False, description="An API key, as a bearer token.")
_UNDECLARED = Rule(ADMIN, global_only=True)  # a route missing from app/scopes.py is closed, never open


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


async def principal_of(request: Request, presented: str | None) -> Principal:
    """Who sent ``presented`` (a key, or None): a stored key's row is read at most every few seconds."""
    access: AccessControl = request.app.state.access
    directory = access.directory
    if presented:
        known = directory.cached(presented)
        return known if known is not None else await run_in_threadpool(directory.lookup, presented)
    required = directory.required_now()
    if required is None:
        required = await run_in_threadpool(directory.refresh_required)
    return ANONYMOUS if required else OPEN


def presented_key(header_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return header_key or (bearer.credentials if bearer else None)


async def authorize(
    request: Request,
    header_key: Annotated[str | None, Depends(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    route = request.scope.get("route")
    rule = rule_of(request.method, route.path) if route is not None else None
    if rule is None:
        logger.error("route %s %s has no scope in app/scopes.py: admin only", request.method, request.url.path)
        rule = _UNDECLARED
    state = request.state
    state.rule = rule  # the audit trail records what this request did, or that it was refused
    if rule.scope == PUBLIC:
        return
    try:
        principal = await principal_of(request, presented_key(header_key, bearer))
    except KeyRefused as exc:
        state.key_name = exc.key_name  # a revoked or expired key is named in the audit trail, never shown
        # The key itself is never logged; the request id in the log line ties this to the client.
        logger.warning("refused a wrong API key for %s %s: %s", request.method, request.url.path, exc.message)
        raise
    state.principal = principal
    if rule.audits or principal.collections is not None:
        state.collections = await collections_named(request, rule)
    _check_scope(request, rule, principal)
    for name in getattr(state, "collections", ()):
        if not principal.may_touch(name):
            raise Forbidden(f"the API key {principal.name!r} may not touch the collection {name!r}")
    await _spend_quota(request, rule, principal)


def _check_scope(request: Request, rule: Rule, principal: Principal) -> None:
    if principal is OPEN:
        return
    if principal is ANONYMOUS:
        if rule.scope == READ and request.app.state.access.settings.read_access == "open":
            return
        what = "reading (IMGSEARCH_READ_ACCESS=key)" if rule.scope == READ else f"this route ({rule.scope} scope)"
        raise Unauthorized(f"{what} needs an API key: send the header X-API-Key or Authorization: Bearer")
    if not principal.can(rule.scope):
        raise Forbidden(
            f"the API key {principal.name!r} has the scope {principal.top_scope}; "
            f"{request.method} {rule_path(request)} needs {rule.scope}"
        )
    if rule.global_only and principal.collections is not None:
        raise Forbidden(f"the API key {principal.name!r} is limited to some collections; this needs an admin key")


async def _spend_quota(request: Request, rule: Rule, principal: Principal) -> None:
    access: AccessControl = request.app.state.access
    client = request.client.host if request.client else None
    quota = access.limit_for(principal, rule.scope, client)
    if quota is None or quota[1] <= 0:
        return
    subject, limit = quota
    if not access.limiter.known(subject):  # the first request of this subject here in this window
        await run_in_threadpool(access.limiter.load, subject)
    retry_after = access.limiter.hit(subject, limit)
    if retry_after is not None:
        who = f"the API key {principal.name!r}" if principal.name else f"the client {client}"
        window = access.settings.rate_window_seconds
        raise RateLimited(
            f"{who} used its {limit} {rule.scope} requests per {window:g} s; try again in {retry_after:.0f} s",
            {"limit": limit, "window_seconds": window, "retry_after_seconds": retry_after},
            headers={"Retry-After": f"{retry_after:.0f}"},
        )


def rule_path(request: Request) -> str:
    route = request.scope.get("route")
    return route.path if route is not None else request.url.path


async def collections_named(request: Request, rule: Rule) -> list[str]:
    """The collections this request names, where its rule says they are (FastAPI has parsed the body already)."""
    where: Any = rule.where
    names: list[Any] = []
    if where == "path":
        names = [request.path_params.get("name") or request.path_params.get("collection")]
    elif where == "query":
        names = [request.query_params.get("collection")]
    elif where == "body":
        body = await _json_body(request)
        names = [body.get("collection", body.get("name"))] if isinstance(body, dict) else []
    elif where == "form":
        form = await request.form()
        names = [*form.getlist("collection"), *form.getlist("collections")]
    elif where == "job":
        names = [await _job_collection(request, request.path_params.get("job_id"))]
    return [name for name in names if isinstance(name, str) and name]


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:  # FastAPI answers the broken body itself
        return None


async def _job_collection(request: Request, job_id: str | None) -> str | None:
    jobs = request.app.state.jobs
    if jobs is None or not job_id:
        return None
    record = await run_in_threadpool(jobs.store.get, job_id)
    return record.collection if record is not None else None


Authorized = Depends(authorize)


def visible_collections(request: Request) -> frozenset[str] | None:
    """The collections a list answer may show this caller; None: all of them."""
    principal = getattr(request.state, "principal", None)
    return principal.collections if principal is not None else None
