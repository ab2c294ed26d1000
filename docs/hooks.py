"""MkDocs hooks: the settings and route-scope tables are generated from the code when the site is built, so
they cannot drift from it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.scopes import RULES
from config import Settings

MARKERS = {"<!-- settings-table -->", "<!-- route-scopes -->"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default: Any = field.get_default(call_default_factory=True)
        shown = "derived" if default is None else f"`{default}`" if default not in ("", []) else "—"
        if name in ("api_keys", "milvus_token"):
            shown = "—"
        meaning = field.description or ""
        rows.append(f"| `IMGSEARCH_{name.upper()}` | {_cell(shown)} | {_cell(meaning)} |")
    return "\n".join(rows)


def route_scopes() -> str:
    rows = ["| route | scope | collection named in |", "|---|---|---|"]
    for (method, path), rule in RULES.items():
        where = rule.where or ("— (admin of every collection)" if rule.global_only else "—")
        rows.append(f"| `{method} {path}` | {rule.scope} | {where} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace("<!-- settings-table -->", settings_table()).replace(
        "<!-- route-scopes -->", route_scopes()
    )
