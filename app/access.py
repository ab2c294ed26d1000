"""API keys: with ``IMGSEARCH_API_KEYS`` set, every route that changes data needs one of the keys
(``X-API-Key: KEY`` or ``Authorization: Bearer KEY``); reads need one too when ``IMGSEARCH_READ_ACCESS=key``.
Without keys configured the service is open, as on a laptop."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from operations.errors import AppError, Forbidden

logger = logging.getLogger(__name__)

# Declared as security schemes so Swagger UI shows an "Authorize" button; checked by hand below so that a
# missing key gives our error shape (401) and a wrong one 403.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of IMGSEARCH_API_KEYS.")
_bearer = HTTPBearer(auto_error=False, description="One of IMGSEARCH_API_KEYS, as a bearer token.")


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


def key_matches(presented: str, keys: list[bytes]) -> bool:
    """Constant time in the presented key and over all configured keys (no early exit on a match)."""
    candidate = presented.encode("utf-8", "surrogatepass")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def _check(request: Request, header_key: str | None, bearer: HTTPAuthorizationCredentials | None, what: str) -> None:
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    presented = header_key or (bearer.credentials if bearer else None)
    if not presented:
        raise Unauthorized(f"{what} needs an API key: send the header X-API-Key or Authorization: Bearer")
    if not key_matches(presented, keys):
        # The key itself is never logged; the request id in the log line ties this to the client.
        logger.warning("refused a wrong API key for %s %s", request.method, request.url.path)
        raise Forbidden("the API key is not valid")


async def require_write_key(
    request: Request,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    _check(request, header_key, bearer, "changing data")


async def require_read_key(
    request: Request,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if request.app.state.read_access == "key":
        _check(request, header_key, bearer, "reading (IMGSEARCH_READ_ACCESS=key)")


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
