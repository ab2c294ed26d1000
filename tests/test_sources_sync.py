"""Source folders on a real directory: registered once, synced as the folder changes (added, deleted, edited in
place, moved to another folder, renamed, the same content twice), originals referenced in place, previews in
the database. On SQLite and MariaDB, with Milvus Lite."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from adapters.stores.sql.sql_schema import images
from config import Settings
from operations.ingest import sync
from tests.conftest import wait_for_job
from tests.imagefiles import BAD_FILES, encode, jpeg, photo

C = "lib"


@pytest.fixture
def client(metadata_url: str, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]):
    with make_client(make_settings(metadata_url, encode_batch_size=4)) as client:
        yield client


def _library(data_root: Path) -> tuple[Path, dict[str, bytes]]:
    """A phone-photo-like folder: JPEGs in year folders, one large photo, a HEIC, a copy of one photo elsewhere,
    a bad file, a NAS thumbnail folder and a hidden file."""
    folder = data_root / f"library_{uuid.uuid4().hex[:8]}"
    files = {f"2024/{month:02d}/IMG_{month:04d}.jpg": jpeg(300 + month) for month in range(1, 9)}
    files["2025/big.jpg"] = encode(photo(320, (3000, 2250)), "JPEG", quality=90)
    files["2025/IMG_0001.HEIC"] = encode(photo(321), "HEIF")
    files["copies/IMG_0003.jpg"] = files["2024/03/IMG_0003.jpg"]
    files["broken.jpg"] = BAD_FILES["notes.jpg"][0]
    files["2024/@eaDir/IMG_0001.jpg/SYNOPHOTO_THUMB_XL.jpg"] = jpeg(399)
    files[".DS_Store"] = b"\x00hidden"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder, files


def _sync(client: TestClient, source_id: int, path: str | None = None) -> dict:
    response = client.post(f"/collections/{C}/sources/{source_id}/sync", json={"path": path} if path else None)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    return job


def _counts(job: dict) -> dict[str, int]:
    return job["result"]["counts"]


def _image_ids(client: TestClient) -> set[str]:
    engine = client.app.state.services.metadata.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        query = select(images.c.image_id).where(images.c.collection == C, images.c.indexed.is_(True))
        return set(conn.execute(query).scalars())


class _EncoderCalls:
    def __init__(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        encoder = client.app.state.services.encoder  # type: ignore[attr-defined]
        real = encoder.encode_pixels

        def counted(pixels):  # type: ignore[no-untyped-def]
            self.images += len(pixels)
            return real(pixels)

        monkeypatch.setattr(encoder, "encode_pixels", counted)


def test_a_source_stays_equal_to_its_folder(
    client: TestClient, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, files = _library(data_root)
    relative = folder.relative_to(data_root).as_posix()

    # Registering: the folder must exist under the data root, once per collection.
    for bad, status in (("../outside", 422), (f"{relative}/nope", 404), (f"{relative}/broken.jpg", 422)):
        assert client.post(f"/collections/{C}/sources", json={"path": bad}).status_code == status, bad
    added = client.post(f"/collections/{C}/sources", json={"path": relative})
    assert added.status_code == 201, added.text
    source = added.json()
    assert "**/@eaDir/**" in source["excludes"] and source["files"] == 0
    assert client.post(f"/collections/{C}/sources", json={"path": relative}).status_code == 409

    # First sync: every entry accounted for; the copy is one image with two paths; NAS thumbnails excluded.
    job = _sync(client, source["id"])
    counts = _counts(job)
    assert counts["stored"] == 10 and counts["linked"] == 1 and counts["rejected"] == 1, counts
    assert job["result"]["skipped"] == 2  # the @eaDir folder and .DS_Store
    assert [e["file"] for e in job["errors"]] == ["broken.jpg"]
    assert client.get(f"/img/count?collection={C}").json()["count"] == 10
    listed = client.get(f"/collections/{C}/sources").json()
    assert listed[0]["files"] == 11 and listed[0]["last_sync_job"] == job["job_id"]

    # Referenced in place: the original is served from its file, the database keeps a preview.
    services = client.app.state.services  # type: ignore[attr-defined]
    big = services.metadata.lookup_sha(C, [_sha(files["2025/big.jpg"])])[_sha(files["2025/big.jpg"])]
    record = services.metadata.fetch(C, [big.id], with_data=True)[big.id]
    assert record.preview and record.mime == "image/jpeg" and (record.width, record.height) == (3000, 2250)
    preview = Image.open(io.BytesIO(record.data))
    assert max(preview.size) == services.settings.preview_size and len(record.data) < len(files["2025/big.jpg"]) / 2
    original = client.get(f"/img/{C}/{big.image_id}")
    assert original.status_code == 200 and original.content == files["2025/big.jpg"]
    small = client.get(f"/img/{C}/{big.image_id}?size=256")
    assert (
        small.headers["content-type"] == "image/jpeg"
        and max(Image.open(__import__("io").BytesIO(small.content)).size) == 256
    )

    # Tags by hand on photos that will move and be edited.
    photos = {p: d for p, d in files.items() if p.endswith((".jpg", ".HEIC")) and p != "broken.jpg" and "@" not in p}
    ids = {path: _id_of(services, data) for path, data in photos.items()}
    moved_id, renamed_id, edited_id = (
        ids["2024/01/IMG_0001.jpg"],
        ids["2024/02/IMG_0002.jpg"],
        ids["2024/04/IMG_0004.jpg"],
    )
    for image_id in (moved_id, renamed_id, edited_id):
        assert client.put(f"/img/{C}/{image_id}/tags", json={"tags": ["家人"]}).status_code == 200

    # The library changes: 2 added, 2 deleted, 1 edited in place, 1 moved to another folder, 1 renamed.
    (folder / "2026").mkdir()
    (folder / "2026/new_a.jpg").write_bytes(jpeg(350))
    (folder / "2026/new_b.jpg").write_bytes(jpeg(351))
    (folder / "2024/05/IMG_0005.jpg").unlink()
    (folder / "2024/06/IMG_0006.jpg").unlink()
    edited = jpeg(352)
    (folder / "2024/04/IMG_0004.jpg").write_bytes(edited)
    os.utime(folder / "2024/04/IMG_0004.jpg", ns=(10**18, 10**18))  # mtime differs even on coarse clocks
    (folder / "albums").mkdir()
    shutil.move(folder / "2024/01/IMG_0001.jpg", folder / "albums/IMG_0001.jpg")
    (folder / "2024/02/IMG_0002.jpg").rename(folder / "2024/02/生日.jpg")
    gone_id = ids["2024/05/IMG_0005.jpg"]
    missing = client.get(f"/img/{C}/{gone_id}")  # deleted but not yet synced: the original is gone
    assert missing.status_code == 404 and "IMG_0005.jpg" in missing.json()["error"]["message"]

    calls = _EncoderCalls(client, monkeypatch)
    second = _sync(client, source["id"])
    counts = _counts(second)
    assert second["done"] == second["total"] == 14  # 12 files now + 2 gone; a move is one entry, not two
    assert counts == {
        "stored": 2,
        "changed": 1,
        "moved": 2,
        "linked": 0,
        "removed": 2,
        "unchanged": 6,
        "rejected": 1,
    }, counts
    assert calls.images == 3  # the two new files and the edited one; moves and renames are not re-encoded
    now = _image_ids(client)
    assert {moved_id, renamed_id, edited_id} <= now and gone_id not in now
    assert len(now) == 10  # 10 - 2 removed + 2 added; the edited image keeps its id
    for image_id in (moved_id, renamed_id, edited_id):
        assert [t["tag"] for t in client.get(f"/img/{C}/{image_id}/tags").json()["tags"]] == ["家人"]
    assert client.get(f"/img/{C}/{edited_id}").content == edited  # the new content, under the old id
    assert client.get(f"/img/{C}/{moved_id}").status_code == 200  # served from its new path
    hits = client.post(
        "/img/search/image", data={"collection": C, "top_k": "1"}, files=[("files", ("q.jpg", edited, "image/jpeg"))]
    ).json()["results"][0]["hits"]
    assert hits[0]["image_id"] == edited_id and hits[0]["score"] > 0.999
    assert hits[0]["paths"] == [f"{relative}/2024/04/IMG_0004.jpg"]  # each hit says where its original is
    assert client.get(f"/img/{C}/{gone_id}").status_code == 404
    assert services.vectors.count(C) == services.metadata.count(C, include_pending=True) == 10

    # Nothing changed: the sync reads directory entries and stat results, never a file's contents.
    opened = []
    monkeypatch.setattr(sync, "_read", lambda *args: opened.append(args[1]))
    counts = _counts(_sync(client, source["id"]))
    assert opened == [] and counts["unchanged"] == 11 and counts["stored"] == counts["removed"] == 0, counts

    # Forgetting the source removes its images from both stores; the files stay.
    removed = client.delete(f"/collections/{C}/sources/{source['id']}").json()
    assert removed["images_removed"] == 10 and client.get(f"/img/count?collection={C}").json()["count"] == 0
    assert services.vectors.count(C) == 0 and (folder / "albums/IMG_0001.jpg").exists()


def test_sync_of_a_sub_folder_touches_only_it(client: TestClient, data_root: Path) -> None:
    folder, _ = _library(data_root)
    source = client.post(f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix()}).json()
    counts = _counts(_sync(client, source["id"], "2024/03"))
    assert counts["stored"] == 1 and client.get(f"/img/count?collection={C}").json()["count"] == 1
    (folder / "2024/07/IMG_0007.jpg").unlink()  # outside the sub-folder: not looked at
    counts = _counts(_sync(client, source["id"], "2024/03"))
    assert counts["unchanged"] == 1 and counts["removed"] == 0
    bad = client.post(f"/collections/{C}/sources/{source['id']}/sync", json={"path": "../x"})
    assert bad.status_code == 422


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _id_of(services, data: bytes) -> str:  # type: ignore[no-untyped-def]
    return services.metadata.lookup_sha(C, [_sha(data)])[_sha(data)].image_id


def _zip(path: Path, members: dict[str, bytes], when: tuple[int, ...] = (2024, 5, 1, 8, 0, 0)) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=when), data)


def test_a_zip_is_a_source_too(client: TestClient, data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A phone's export as a .zip: synced from its central directory, originals read from it in place, and the
    archive replaced by a newer one is followed like a folder (added, removed, edited, renamed)."""
    folder = data_root / f"zips_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    archive = folder / "phone.zip"
    photos = {f"DCIM/IMG_{n}.jpg": jpeg(500 + n) for n in range(4)}
    _zip(archive, {**photos, "DCIM/.hidden.jpg": jpeg(599), "../escape.jpg": jpeg(598), "@eaDir/t.jpg": jpeg(597)})
    (folder / "not_a_zip.zip").write_bytes(b"PK\x03\x04 but nothing else")
    relative = archive.relative_to(data_root).as_posix()
    assert client.post(f"/collections/{C}/sources", json={"path": f"{relative[:-9]}not_a_zip.zip"}).status_code == 422
    source = client.post(f"/collections/{C}/sources", json={"path": relative, "excludes": ["@eaDir/**"]}).json()

    job = _sync(client, source["id"])
    assert _counts(job)["stored"] == 4 and job["result"]["skipped"] == 3, job  # hidden, zip-slip, excluded
    services = client.app.state.services  # type: ignore[attr-defined]
    ids = {name: _id_of(services, data) for name, data in photos.items()}
    first = client.get(f"/img/{C}/{ids['DCIM/IMG_0.jpg']}")
    assert first.status_code == 200 and first.content == photos["DCIM/IMG_0.jpg"]  # read from the zip

    edited = jpeg(550)
    newer = {
        "DCIM/IMG_0.jpg": photos["DCIM/IMG_0.jpg"],  # unchanged
        "DCIM/IMG_1.jpg": edited,  # edited in place (same name, same timestamp: the CRC tells)
        "Album/生日.jpg": photos["DCIM/IMG_2.jpg"],  # renamed
        "DCIM/IMG_9.jpg": jpeg(509),  # new; IMG_3 removed
    }
    _zip(archive, newer)
    calls = _EncoderCalls(client, monkeypatch)
    counts = _counts(_sync(client, source["id"]))
    assert (counts["stored"], counts["changed"], counts["moved"], counts["removed"], counts["unchanged"]) == (
        1,
        1,
        1,
        1,
        1,
    ), counts
    assert calls.images == 2  # the new and the edited member; the renamed one is not re-encoded
    assert client.get(f"/img/{C}/{ids['DCIM/IMG_1.jpg']}").content == edited
    assert client.get(f"/img/{C}/{ids['DCIM/IMG_2.jpg']}").status_code == 200  # from its new name
    assert client.get(f"/img/{C}/{ids['DCIM/IMG_3.jpg']}").status_code == 404
    assert services.vectors.count(C) == services.metadata.count(C, include_pending=True) == 4

    archive.unlink()  # gone: the originals say so, the previews stay searchable until the next sync
    gone = client.get(f"/img/{C}/{ids['DCIM/IMG_0.jpg']}")
    assert gone.status_code == 404 and "phone.zip/DCIM/IMG_0.jpg" in gone.json()["error"]["message"]
