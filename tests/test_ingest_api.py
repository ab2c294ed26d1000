"""Your own images in: upload, folder and zip ingest; bad files refused by name; duplicates stored once."""

from __future__ import annotations

import hashlib
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import Settings
from tests.conftest import wait_for_job
from tests.imagefiles import BAD_FILES, encode, gif_two_frames, jpeg, noisy_png, picture

GOOD = 16


def make_folder(root: Path) -> tuple[Path, dict[str, bytes]]:
    """GOOD distinct images in nested folders and several formats, one byte-identical copy, bad files, a
    hidden file; returns the folder and the good files by relative name."""
    folder = root / f"photos_{uuid.uuid4().hex[:8]}"
    good: dict[str, bytes] = {f"trip/day{i}/img{i}.jpg": jpeg(100 + i) for i in range(GOOD - 6)}
    good["misnamed_png.jpg"] = encode(picture(201), "PNG")
    good["x.webp"] = encode(picture(202), "WEBP")
    good["x.bmp"] = encode(picture(203), "BMP")
    good["anim.gif"] = gif_two_frames(204)
    good["iphone/IMG_0001.HEIC"] = encode(picture(205), "HEIF")
    good["phone.avif"] = encode(picture(206), "AVIF")
    files = dict(good)
    files["copies/same_as_img0.jpg"] = good["trip/day0/img0.jpg"]
    files.update({f"bad/{name}": data for name, (data, _) in BAD_FILES.items()})
    files[".DS_Store"] = b"\x00\x01hidden"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder, good


def _counts(client: TestClient, collection: str) -> tuple[int, int]:
    services = client.app.state.services  # type: ignore[attr-defined]
    return services.metadata.count(collection, include_pending=True), services.vectors.count(collection)


def _ingest(client: TestClient, collection: str, path: str) -> dict:
    response = client.post("/img/ingest", json={"collection": collection, "path": path})
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job_id"])


@pytest.fixture
def client(metadata_url: str, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]):
    with make_client(make_settings(metadata_url, encode_batch_size=4)) as client:
        yield client


def test_folder_ingest_lists_bad_files_stores_duplicates_once_and_is_idempotent(
    client: TestClient, data_root: Path
) -> None:
    folder, good = make_folder(data_root)
    job = _ingest(client, "photos", folder.name)
    assert job["state"] == "succeeded", job
    assert (job["total"], job["loaded"], job["skipped"], job["failed"]) == (GOOD + 2 + len(BAD_FILES), GOOD, 1, 5)
    rejected = {e["file"]: e["reason"] for e in job["errors"]}
    assert set(rejected) == {f"bad/{name}" for name in BAD_FILES} | {".DS_Store"}
    assert "hidden file" in rejected[".DS_Store"]  # listed with its reason, not dropped without a word
    for name, (_, reason) in BAD_FILES.items():
        assert reason in rejected[f"bad/{name}"]
    assert _counts(client, "photos") == (GOOD, GOOD)

    for name, data in good.items():  # every good file is retrievable, typed by content
        image_id = hashlib.sha256(data).hexdigest()[:24]
        response = client.get(f"/img/photos/{image_id}")
        assert response.status_code == 200 and response.content == data, name
    assert (
        client.get(f"/img/photos/{hashlib.sha256(good['misnamed_png.jpg']).hexdigest()[:24]}").headers["content-type"]
        == "image/png"
    )

    again = _ingest(client, "photos", folder.name)
    assert (again["loaded"], again["skipped"], again["failed"]) == (0, GOOD + 1, 5)
    assert _counts(client, "photos") == (GOOD, GOOD)


def test_zip_ingest_matches_folder_ingest(client: TestClient, data_root: Path) -> None:
    folder, _ = make_folder(data_root)
    archive = data_root / f"{folder.name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    job = _ingest(client, "zipped", archive.name)
    assert (job["state"], job["loaded"], job["skipped"], job["failed"]) == ("succeeded", GOOD, 1, 5), job
    assert _counts(client, "zipped") == (GOOD, GOOD)

    (data_root / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    bad = client.post("/img/ingest", json={"collection": "zipped", "path": "broken.zip"})
    assert bad.status_code == 422 and "not a valid zip" in bad.json()["error"]["message"]
    for path, status in (("../", 422), ("/etc", 422), ("no_such_folder", 404)):
        response = client.post("/img/ingest", json={"collection": "zipped", "path": path})
        assert response.status_code == status, (path, response.text)
    assert _counts(client, "zipped") == (GOOD, GOOD)


def test_every_zip_entry_is_stored_or_listed_with_its_reason(client: TestClient, data_root: Path) -> None:
    """As a new user tried it: a zip-slip name, a nested zip and a 300 MB entry of zeros beside one good photo."""
    escaped = f"escaped_{uuid.uuid4().hex[:8]}.jpg"
    inner = data_root / f"inner_{uuid.uuid4().hex[:8]}.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("photo.jpg", jpeg(401))
    archive = data_root / f"hostile_{uuid.uuid4().hex[:8]}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/inner.jpg", jpeg(400))
        zf.writestr(f"../../../../tmp/{escaped}", jpeg(402))
        zf.writestr("nested.zip", inner.read_bytes())
        with zf.open("zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(2**20)
            for _ in range(300):
                member.write(chunk)
        zf.writestr("__MACOSX/ok/._inner.jpg", b"\x00\x05\x16\x07")
    job = _ingest(client, "hostile", archive.name)
    assert (job["state"], job["total"], job["loaded"], job["failed"]) == ("succeeded", 5, 1, 4), job
    reasons = {e["file"]: e["reason"] for e in job["errors"]}
    assert "unsafe name in the zip" in reasons[f"../../../../tmp/{escaped}"]
    assert "zip archive inside" in reasons["nested.zip"]
    assert "over the limit" in reasons["zeros.bin"]
    assert "hidden file" in reasons["__MACOSX/ok/._inner.jpg"]
    assert not (Path("/tmp") / escaped).exists() and not (data_root.parent / "tmp" / escaped).exists()
    assert _counts(client, "hostile") == (1, 1)


def test_upload_stores_dedups_and_names_ids(client: TestClient) -> None:
    first, second = jpeg(301), jpeg(302)
    response = client.post(
        "/img/upload",
        data={"collection": "up"},
        files=[("files", ("a.jpg", first, "image/jpeg")), ("files", ("b.jpg", second, "image/jpeg"))],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stored"], body["duplicates"], body["rejected"]) == (2, 0, 0)
    assert [r["image_id"] for r in body["results"]] == [hashlib.sha256(d).hexdigest()[:24] for d in (first, second)]

    again = client.post("/img/upload", data={"collection": "up"}, files=[("files", ("again.jpg", first, "x/y"))])
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "duplicate"

    named = client.post(
        "/img/upload",
        data={"collection": "up", "image_ids": ["my-photo-1"]},
        files=[("files", ("c.jpg", jpeg(303), "image/jpeg"))],
    )
    assert named.json()["results"][0]["image_id"] == "my-photo-1"
    assert client.get("/img/up/my-photo-1").content == jpeg(303)
    taken = client.post(
        "/img/upload",
        data={"collection": "up", "image_ids": ["my-photo-1"]},
        files=[("files", ("d.jpg", jpeg(304), "image/jpeg"))],
    )
    assert taken.status_code == 422 and "taken" in taken.json()["error"]["message"]
    assert _counts(client, "up") == (3, 3)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_alone_gets_a_4xx_naming_it(client: TestClient, name: str) -> None:
    client.post("/img/upload", data={"collection": "bad"}, files=[("files", ("ok.jpg", jpeg(1), "image/jpeg"))])
    data, reason = BAD_FILES[name]
    response = client.post("/img/upload", data={"collection": "bad"}, files=[("files", (name, data, "image/jpeg"))])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert name in error["message"] and reason in error["message"]
    assert error["details"][0]["status"] == "rejected"
    assert _counts(client, "bad") == (1, 1)


def test_rejected_files_do_not_even_create_the_collection(client: TestClient) -> None:
    files = [("files", (name, data, "image/jpeg")) for name, (data, _) in BAD_FILES.items()]
    response = client.post("/img/upload", data={"collection": "never"}, files=files)
    assert response.status_code == 422 and len(response.json()["error"]["details"]) == len(BAD_FILES)
    assert client.get("/collections").json() == []
    assert not client.app.state.services.vectors.has_collection("never")  # type: ignore[attr-defined]


def test_mixed_upload_keeps_the_good_files(client: TestClient) -> None:
    files = [("files", ("good.jpg", jpeg(9), "image/jpeg"))]
    files += [("files", (name, data, "image/jpeg")) for name, (data, _) in BAD_FILES.items()]
    response = client.post("/img/upload", data={"collection": "mixed"}, files=files)
    assert response.status_code == 200
    statuses = {r["file"]: r["status"] for r in response.json()["results"]}
    assert statuses == {"good.jpg": "stored", **{name: "rejected" for name in BAD_FILES}}
    assert _counts(client, "mixed") == (1, 1)


def test_size_limits_give_413_without_storing(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    big = noisy_png(300)  # ~270 KB
    settings = make_settings(max_image_bytes=200 * 1024, max_request_bytes=1024 * 1024, max_upload_files=3)
    with make_client(settings) as client:
        response = client.post("/img/upload", data={"collection": "lim"}, files=[("files", ("big.png", big, "x"))])
        assert response.status_code == 413 and "big.png" in response.json()["error"]["message"]

        huge = b"\x00" * (2 * 1024 * 1024)
        response = client.post("/img/upload", data={"collection": "lim"}, files=[("files", ("huge.bin", huge, "x"))])
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"

        def chunks():  # no Content-Length: the limit is enforced while the body streams
            for _ in range(64):
                yield b"\x00" * 65536

        response = client.post(
            "/img/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"

        many = [("files", (f"{i}.jpg", jpeg(i), "image/jpeg")) for i in range(4)]
        response = client.post("/img/upload", data={"collection": "lim"}, files=many)
        assert response.status_code == 413 and "at most 3 files" in response.json()["error"]["message"]
        assert client.get("/collections").json() == [] or _counts(client, "lim") == (0, 0)
        assert client.get("/healthz").status_code == 200
