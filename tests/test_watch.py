"""Watched sources on a real directory with real file-system events (inotify, and polling): changes are
followed without anyone asking for a sync, a burst makes a few sync jobs, excluded paths make none, and with
two processes' watchers exactly one watches a source."""

from __future__ import annotations

import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import Settings
from operations.ingest.watch import SourceWatcher
from tests.imagefiles import jpeg
from tests.videofiles import write_video

C = "watched"
SETTLE_LIMIT_S = 60


def _folder(data_root: Path, count: int) -> Path:
    folder = data_root / f"watched_{uuid.uuid4().hex[:8]}"
    (folder / "2024").mkdir(parents=True)
    for i in range(count):
        (folder / "2024" / f"IMG_{i:04d}.jpg").write_bytes(jpeg(500 + i))
    return folder


def _sync_jobs(client: TestClient) -> list[dict]:
    return [j for j in client.get(f"/jobs?collection={C}&limit=100").json() if j["kind"] == "sync"]


def _settled(client: TestClient, count: int, after: int = 0) -> list[dict]:
    """Waits until more than ``after`` sync jobs were made, the collection has ``count`` images and no sync job is
    queued or running."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while time.monotonic() < deadline:
        jobs = _sync_jobs(client)
        busy = [j for j in jobs if j["state"] in ("queued", "running")]
        counted = client.get(f"/img/count?collection={C}").json().get("count")
        if not busy and counted == count and len(jobs) > after:
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"not settled at {count} images: {client.get(f'/img/count?collection={C}').json()}")


@pytest.fixture(params=["inotify", "polling"])
def client(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
):
    settings = make_settings(
        f"sqlite:///{tmp_path / 'meta.db'}",
        watch_debounce_seconds=0.5,
        watch_polling=request.param == "polling",
        encode_batch_size=8,
    )
    with make_client(settings) as client:
        yield client


def test_a_watched_source_follows_its_folder(client: TestClient, data_root: Path) -> None:
    folder = _folder(data_root, 3)
    source = client.post(
        f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix(), "watched": True}
    ).json()
    assert source["watched"]
    _settled(client, 3)  # the first sync comes by itself
    services = client.app.state.services  # type: ignore[attr-defined]
    moved_id = services.sources.files(source["id"])["2024/IMG_0001.jpg"].image
    moved = services.metadata.fetch(C, [moved_id])[moved_id].image_id
    client.put(f"/img/{C}/{moved}/tags", json={"tags": ["旅行"]})

    # Added, deleted and moved to a new folder, nobody asking for a sync.
    before = len(_sync_jobs(client))
    (folder / "2024" / "IMG_0100.jpg").write_bytes(jpeg(600))
    (folder / "2024" / "IMG_0000.jpg").unlink()
    (folder / "albums").mkdir()
    shutil.move(folder / "2024" / "IMG_0001.jpg", folder / "albums" / "IMG_0001.jpg")
    jobs = _settled(client, 3, after=before)
    assert [t["tag"] for t in client.get(f"/img/{C}/{moved}/tags").json()["tags"]] == ["旅行"]  # a move, not new
    assert "albums/IMG_0001.jpg" in services.sources.files(source["id"])
    assert len(jobs) - before <= 2

    # A burst of 60 files makes a few sync jobs, not 60.
    before = len(_sync_jobs(client))
    for i in range(60):
        (folder / "burst" / f"{i // 20}").mkdir(parents=True, exist_ok=True)
        (folder / "burst" / f"{i // 20}" / f"b{i}.jpg").write_bytes(jpeg(700 + i))
    jobs = _settled(client, 63, after=before)
    assert 1 <= len(jobs) - before <= 3, [j["params"] for j in jobs[: len(jobs) - before]]

    # Changes under excluded or hidden paths make no job at all.
    before = len(_sync_jobs(client))
    (folder / "2024" / "@eaDir").mkdir()
    (folder / "2024" / "@eaDir" / "thumb.jpg").write_bytes(jpeg(800))
    (folder / ".hidden.jpg").write_bytes(jpeg(801))
    time.sleep(3)
    assert len(_sync_jobs(client)) == before
    assert client.get(f"/img/count?collection={C}").json()["count"] == 63


def test_a_watched_zip_is_followed_when_it_is_replaced(client: TestClient, data_root: Path) -> None:
    folder = data_root / f"watched_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    archive = folder / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for i in range(2):
            out.writestr(f"IMG_{i}.jpg", jpeg(700 + i))
    source = client.post(
        f"/collections/{C}/sources", json={"path": archive.relative_to(data_root).as_posix(), "watched": True}
    ).json()
    first = _settled(client, 2)
    (folder / "beside.jpg").write_bytes(jpeg(799))  # a file next to the zip is not the source: no sync
    time.sleep(2)
    assert len(_sync_jobs(client)) == len(first)
    newer = folder / "export.zip.tmp"
    with zipfile.ZipFile(newer, "w") as out:
        for i in range(3):
            out.writestr(f"IMG_{i}.jpg", jpeg(700 + i))
    newer.replace(archive)  # how an export is usually replaced: written aside, then renamed over it
    _settled(client, 3, after=len(first))
    assert client.app.state.services.sources.files(source["id"]).keys() == {"IMG_0.jpg", "IMG_1.jpg", "IMG_2.jpg"}  # type: ignore[attr-defined]


def test_one_process_watches_each_source(
    tmp_path: Path,
    data_root: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'meta.db'}", watch_debounce_seconds=0.5)
    folder = _folder(data_root, 1)
    with make_client(settings) as client:
        source = client.post(f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix()})
        services = client.app.state.services  # type: ignore[attr-defined]
        client.app.state.watcher.close()  # type: ignore[attr-defined]  # two watchers of our own instead
        client.app.state.watcher = None  # type: ignore[attr-defined]
        services.sources.remove(source.json()["id"])
        record = services.sources.add(C, folder.relative_to(data_root).as_posix(), [], watched=True)
        submitted: list[tuple[str, int, str | None]] = []
        first = SourceWatcher(services, "process-1", lambda s, p: submitted.append(("1", s.id, p)))
        second = SourceWatcher(services, "process-2", lambda s, p: submitted.append(("2", s.id, p)))
        try:
            first.start()
            time.sleep(1)
            second.start()
            time.sleep(2)
            assert first.watching == [record.id] and second.watching == []
            assert [who for who, *_ in submitted] == ["1"]  # its catch-up sync, from the holder only
            first.close()  # lets go of the lease: the other one takes over
            second.refresh()
            deadline = time.monotonic() + 10
            while second.watching != [record.id] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert second.watching == [record.id]
        finally:
            second.close()


def test_a_watched_source_follows_files_whose_names_are_not_utf8(client: TestClient, data_root: Path) -> None:
    """A GBK-named folder and file appear in a watched source (as an old Windows tool writes them): the change is
    synced by the watcher, and the photo is found by its decoded name."""
    import os

    folder = _folder(data_root, 1)
    client.post(f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix(), "watched": True})
    _settled(client, 1)
    odd = os.path.join(os.fsencode(folder), "相册".encode("gbk"))
    os.mkdir(odd)
    with open(os.path.join(odd, "旧照片.jpg".encode("gbk")), "wb") as handle:
        handle.write(jpeg(590))
    jobs = _settled(client, 2, after=1)
    assert all(j["state"] == "succeeded" for j in jobs), jobs
    hits = client.post("/img/search", json={"collection": C, "text": "旧照片", "mode": "keyword"}).json()["hits"]
    assert len(hits) == 1 and hits[0]["paths"][0].endswith("/相册/旧照片.jpg")


def test_a_watched_source_takes_a_video_once_its_copy_is_complete(client: TestClient, data_root: Path) -> None:
    """A phone video copied in slowly: refused while it is cut short (no index yet), taken when the copy completes
    (its size changed, so the next sync reads it again); a Live Photo's motion file stays with its photo."""
    folder = _folder(data_root, 1)
    client.post(f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix(), "watched": True})
    _settled(client, 1)
    whole = write_video(data_root / f"staging_{uuid.uuid4().hex[:6]}.mp4", seconds=4, patterned=True).path
    data = whole.read_bytes()
    target = folder / "2024" / "VID_0001.mp4"
    with target.open("wb") as handle:
        handle.write(data[: len(data) // 2])
    jobs = _settled(client, 1, after=1)
    assert any("VID_0001.mp4" in e["file"] for j in jobs for e in j["errors"]), jobs
    with target.open("ab") as handle:
        handle.write(data[len(data) // 2 :])
    _settled(client, 2, after=len(jobs))
    (folder / "2024" / "IMG_0009.JPG").write_bytes(jpeg(909))
    write_video(folder / "2024" / "IMG_0009.MOV", seconds=2)
    _settled(client, 3, after=len(_sync_jobs(client)))
    time.sleep(1.5)  # the motion file's own event, if any, comes and goes
    _settled(client, 3)
    hits = client.post("/img/search", json={"collection": C, "text": "视频", "filters": {"kinds": ["video"]}}).json()
    # one video (its moments may be several hits); the Live Photo's motion file is not an item
    assert {(h["id"], h["kind"]) for h in hits["hits"]} == {(hits["hits"][0]["id"], "video")}, hits
    assert hits["hits"][0]["paths"][0].endswith("VID_0001.mp4"), hits
