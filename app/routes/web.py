"""The search page at ``/``: static HTML + a little JS over the public API (no Node build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    # no-cache: the page is tiny and must pick up a new app.js after an upgrade.
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})
