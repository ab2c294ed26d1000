"""The one place where every route declares the scope it needs and where its collection is named.

``read``: searches, images, counts, jobs, models. ``write``: uploads, ingests, loads, tags, descriptions, deletes
of images. ``admin``: collections, sources, reconcile, re-embed, keys and the audit trail (``global``: only a key
of every collection). ``public``: probes and the page. A route missing here is refused at start-up
(``check_every_route_declared``) and by the test that walks the OpenAPI schema; docs/access.md lists this table.

``where`` says how a request names its collection, so a key limited to some collections is held to them:
``path`` (``{name}`` or ``{collection}``), ``query`` (``?collection=``), ``body`` (JSON ``collection``, or ``name``
when creating one), ``form`` (a form's ``collection`` or ``collections``), ``job`` (the job's collection), or
None (the route is about no single collection: lists are cut to the key's collections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import FastAPI

Where = Literal["path", "query", "body", "form", "job"] | None


@dataclass(frozen=True)
class Rule:
    scope: Literal["public", "read", "write", "admin"]
    where: Where = None
    global_only: bool = False  # admin of every collection only (keys, audit)
    audited: bool | None = None  # None: audited when the scope is write or admin

    @property
    def audits(self) -> bool:
        return self.audited if self.audited is not None else self.scope in ("write", "admin")


READ, WRITE, ADMIN, PUBLIC = "read", "write", "admin", "public"

RULES: dict[tuple[str, str], Rule] = {
    # searching (以文搜图, 以图搜图) and reading images
    ("POST", "/img/search"): Rule(READ, "body"),
    ("POST", "/img/search/combined"): Rule(READ, "form"),
    ("POST", "/img/search/image"): Rule(READ, "form"),
    ("POST", "/img/search/compare"): Rule(READ, "form"),
    ("GET", "/img/search.png"): Rule(READ, "query"),
    ("GET", "/img/{collection}/{image_id}/similar"): Rule(READ, "path"),
    ("POST", "/img/classify"): Rule(READ, "form"),
    ("GET", "/img/count"): Rule(READ, "query"),
    ("GET", "/img/{collection}/{image_id}"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/thumb"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/frame"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/clip"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/tags"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/text"): Rule(READ, "path"),
    ("GET", "/collections"): Rule(READ),
    ("GET", "/collections/{name}/tags"): Rule(READ, "path"),
    ("GET", "/collections/{name}/sources"): Rule(READ, "path"),
    ("GET", "/collections/{name}/duplicates"): Rule(READ, "path"),
    ("GET", "/collections/{name}/people"): Rule(READ, "path"),
    ("GET", "/collections/{name}/people/{person_id}"): Rule(READ, "path"),
    ("GET", "/collections/{name}/faces/{face_id}/crop"): Rule(READ, "path"),
    ("GET", "/img/{collection}/{image_id}/faces"): Rule(READ, "path"),
    ("GET", "/models"): Rule(READ),
    ("POST", "/embed/text"): Rule(READ),
    ("GET", "/jobs"): Rule(READ, "query"),
    ("GET", "/jobs/{job_id}"): Rule(READ, "job"),
    # changing images
    ("POST", "/img/load"): Rule(WRITE, "body"),
    ("POST", "/img/ingest"): Rule(WRITE, "body"),
    ("POST", "/img/evaluate"): Rule(WRITE, "body"),
    ("POST", "/img/upload"): Rule(WRITE, "form"),
    ("DELETE", "/img/{collection}/{image_id}"): Rule(WRITE, "path"),
    ("PUT", "/img/{collection}/{image_id}/tags"): Rule(WRITE, "path"),
    ("PUT", "/img/{collection}/{image_id}/description"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/tags"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/ocr"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/duplicates"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/duplicates/delete"): Rule(WRITE, "path"),
    ("POST", "/jobs/{job_id}/cancel"): Rule(WRITE, "job"),
    ("PATCH", "/collections/{name}/people/{person_id}"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/people/merge"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/faces/assign"): Rule(WRITE, "path"),
    ("POST", "/collections/{name}/people/{person_id}/faces/move"): Rule(WRITE, "path"),
    # collections, sources, models of a collection
    ("POST", "/collections"): Rule(ADMIN, "body"),
    ("DELETE", "/collections/{name}"): Rule(ADMIN, "path"),
    ("PATCH", "/collections/{name}"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/reconcile"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/reembed"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/reembed/switch"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/reembed/rollback"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/reembed/finalize"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/sources"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/faces"): Rule(ADMIN, "path"),
    ("DELETE", "/collections/{name}/faces"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/people/cluster"): Rule(ADMIN, "path"),
    ("DELETE", "/collections/{name}/sources/{source_id}"): Rule(ADMIN, "path"),
    ("POST", "/collections/{name}/sources/{source_id}/sync"): Rule(ADMIN, "path"),
    # keys and the audit trail
    ("GET", "/keys"): Rule(ADMIN, global_only=True),
    ("POST", "/keys"): Rule(ADMIN, global_only=True),
    ("DELETE", "/keys/{name}"): Rule(ADMIN, global_only=True),
    ("GET", "/keys/me"): Rule(PUBLIC),
    ("GET", "/audit"): Rule(ADMIN, global_only=True),
    # probes and the page
    ("GET", "/livez"): Rule(PUBLIC),
    ("GET", "/readyz"): Rule(PUBLIC),
    ("GET", "/healthz"): Rule(PUBLIC),
    ("GET", "/metrics"): Rule(PUBLIC),
    ("GET", "/"): Rule(PUBLIC),
}


def rule_of(method: str, path: str) -> Rule | None:
    return RULES.get(("GET" if method == "HEAD" else method, path))


def undeclared_routes(app: FastAPI) -> list[str]:
    """Routes of the OpenAPI schema (and the page) that have no rule: each would be a hole, so start-up fails."""
    missing = [
        f"{method.upper()} {path}"
        for path, operations in app.openapi().get("paths", {}).items()
        for method in operations
        if (method.upper(), path) not in RULES
    ]
    return sorted(missing)


def check_every_route_declared(app: FastAPI) -> None:
    missing = undeclared_routes(app)
    if missing:
        raise RuntimeError(f"routes without a scope in app/scopes.py: {', '.join(missing)}")
