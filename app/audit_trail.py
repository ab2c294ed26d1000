"""Writes the audit trail after each response: every data-changing request (write and admin routes) and every
refused one (401, 403, 429), with who (the key's name, never the key), the route, the collection, the job or
images it touched (from the path and the JSON answer), the status and the outcome."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.stores.sql.audit_store import AuditEntry
from adapters.stores.sql.sql_schema import utc_now
from app.observability import REQUEST_ID
from operations.access.control import AccessControl

logger = logging.getLogger(__name__)

REFUSED = (401, 403, 429)
_MAX_CAPTURED = 256 * 1024  # answers this large name their images in the path, not the body
_MAX_TARGET = 512


class AuditTrail:
    def __init__(self, app: ASGIApp, access: AccessControl) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        chunks: list[bytes] = []
        size = 0

        async def watching_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and size <= _MAX_CAPTURED:
                body = message.get("body", b"")
                size += len(body)
                chunks.append(body)
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            state = scope.get("state") or {}
            rule = state.get("rule")
            if rule is not None and (rule.audits or status in REFUSED):
                entry = _entry(scope, state, status, b"".join(chunks) if size <= _MAX_CAPTURED else b"")
                await run_in_threadpool(self.access.record, entry)


def _entry(scope: Scope, state: dict[str, Any], status: int, body: bytes) -> AuditEntry:
    principal = state.get("principal")
    collections = state.get("collections") or [None]
    route = scope.get("route")
    client = scope.get("client")
    outcome = "refused" if status in REFUSED else "ok" if status < 400 else "failed"
    return AuditEntry(
        at=utc_now(),
        key_name=principal.name if principal is not None else state.get("key_name"),
        method=scope["method"],
        route=route.path if route is not None else scope["path"],
        path=scope["path"][:512],
        collection=collections[0],
        target=_target(scope.get("path_params") or {}, body if outcome == "ok" else b""),
        status=status,
        outcome=outcome,
        client=client[0] if client else None,
        request_id=REQUEST_ID.get(),
    )


def _target(path_params: dict[str, Any], body: bytes) -> str | None:
    """``job:ID``, ``image:ID`` or ``images:ID,ID,…`` (cut at 512 characters), else the path's source id."""
    answer: Any = None
    if body[:1] in (b"{", b"["):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
    if isinstance(answer, dict):
        if answer.get("job_id"):
            return f"job:{answer['job_id']}"
        images = [str(r["image_id"]) for r in answer.get("results") or [] if isinstance(r, dict) and r.get("image_id")]
        images += [str(i) for i in answer.get("deleted") or [] if isinstance(i, str | int)]
        if images:
            return ("images:" + ",".join(images))[:_MAX_TARGET]
    for name, kind in (("image_id", "image"), ("job_id", "job"), ("source_id", "source")):
        if path_params.get(name):
            return f"{kind}:{path_params[name]}"[:_MAX_TARGET]
    return None
