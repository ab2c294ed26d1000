"""The audit trail keeps IMGSEARCH_AUDIT_RETENTION_DAYS of entries, on both metadata backends: older ones are
deleted in batches, newer ones (and every entry, with retention 0) stay, readable as before."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from adapters.stores.sql import audit_store
from adapters.stores.sql.audit_store import AuditEntry, AuditFilter
from adapters.stores.sql.sql_schema import create_metadata_engine, utc_now
from config import Settings
from operations.access.control import AccessControl


def entry(at: dt.datetime, route: str) -> AuditEntry:
    return AuditEntry(at, "family", "DELETE", route, "/img/photos/1", "photos", "image:1", 403, "refused", None, None)


def test_entries_older_than_the_retention_are_deleted(
    metadata_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_store, "PRUNE_BATCH", 3)  # the old entries span several batches
    engine = create_metadata_engine(metadata_url)
    control = AccessControl(Settings(_env_file=None, data_dir=tmp_path, audit_retention_days=30))
    try:
        control.attach(engine)
        assert control.audit is not None
        now = utc_now()
        old = [entry(now - dt.timedelta(days=40, minutes=i), f"old{i}") for i in range(8)]
        kept = [entry(now - dt.timedelta(days=29), "recent"), entry(now, "now")]
        control.audit.add(old[:4])
        control.audit.add(kept[:1])  # an entry within the retention between old ones: ids are not sorted by time
        control.audit.add(old[4:] + kept[1:])

        control.settings.audit_retention_days = 0
        assert control.prune_audit() == 0
        assert len(control.page(AuditFilter(), 100)) == 10

        control.settings.audit_retention_days = 30
        assert control.prune_audit() == 8
        assert sorted(e.route for e in control.page(AuditFilter(), 100)) == ["now", "recent"]
        assert control.prune_audit() == 0
    finally:
        control.close()
        engine.dispose()
