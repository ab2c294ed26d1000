"""API keys: create (the key is shown once), list, revoke; and ``/keys/me``, which tells a client (the page) what
the key it holds may do. A change reaches every process within a few seconds, without a restart."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from adapters.stores.sql.key_store import KeyRecord, KeyStore
from app.access import api_key_header, bearer_scheme, presented_key, principal_of
from app.errors import documented
from app.schemas import CollectionName
from operations.access import keys
from operations.access.keys import OPEN, SCOPES
from operations.errors import NotReady

router = APIRouter(prefix="/keys", tags=["keys"])
ERRORS = documented(401, 403, 404, 409, 422, 429, 503)


class CreateKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.@:+\- ]+$", examples=["family"])
    scopes: list[str] = Field(description=f"Some of {', '.join(SCOPES)}; each includes the ones before it.")
    collections: list[CollectionName] | None = Field(
        None, max_length=1000, description="The collections it may touch; leave out for all."
    )
    expires_at: dt.datetime | None = Field(None, description="UTC, e.g. 2027-01-31T00:00:00Z; leave out: never.")
    rate_limit: int | None = Field(
        None, ge=0, le=10_000_000, description="Requests per quota window (0: none); default by scope."
    )


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scopes: list[str]
    collections: list[str] | None
    rate_limit: int | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class CreatedKey(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash.")


class MeOut(BaseModel):
    name: str | None = Field(description="The key's name; null without a key.")
    scopes: list[str] = Field(description="What this caller may do (all three on a service without keys).")
    collections: list[str] | None
    expires_at: dt.datetime | None = None
    keys_required: bool = Field(description="Whether the service asks for keys at all.")
    read_access: str


def key_out(record: KeyRecord) -> KeyOut:
    values = record.__dict__ | {"scopes": list(record.scopes)}
    values["collections"] = list(record.collections) if record.collections is not None else None
    return KeyOut(**values)


def _store(request: Request) -> KeyStore:
    store = request.app.state.access.keys
    if store is None:
        raise NotReady(request.app.state.startup.message())
    return store


@router.get("", response_model=list[KeyOut], responses=ERRORS)
async def list_keys(request: Request, include_revoked: bool = False) -> list[KeyOut]:
    """Every key (never the key itself), the revoked ones too when asked."""
    return [key_out(r) for r in await run_in_threadpool(_store(request).listed, include_revoked)]


@router.post("", status_code=201, response_model=CreatedKey, responses=ERRORS)
async def create_key(body: CreateKeyRequest, request: Request) -> CreatedKey:
    """A new key: keep the answer's ``key``, it is not shown again."""
    created = await run_in_threadpool(
        keys.create, _store(request), body.name, body.scopes, body.collections, body.expires_at, body.rate_limit
    )
    request.app.state.access.directory.forget()
    return CreatedKey(**key_out(created.record).model_dump(), key=created.key)


@router.delete("/{name}", response_model=KeyOut, responses=ERRORS)
async def revoke_key(name: str, request: Request) -> KeyOut:
    """Revokes the active key of that name (or id): refused by every process within a few seconds."""
    record = await run_in_threadpool(keys.revoke, _store(request), name)
    request.app.state.access.directory.forget()
    return key_out(record)


@router.get("/me", response_model=MeOut, responses=documented(403, 503))
async def who_am_i(
    request: Request,
    header_key: Annotated[str | None, Depends(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> MeOut:
    """What the key sent with this request may do (403 when it is not valid), or an anonymous caller."""
    principal = await principal_of(request, presented_key(header_key, bearer))
    settings = request.app.state.access.settings
    scopes = [scope for scope in SCOPES if principal.can(scope)]
    if principal.name is None and principal is not OPEN and settings.read_access == "open":
        scopes = ["read"]
    return MeOut(
        name=principal.name,
        scopes=scopes,
        collections=sorted(principal.collections) if principal.collections is not None else None,
        expires_at=principal.expires_at,
        keys_required=principal is not OPEN,
        read_access=settings.read_access,
    )
