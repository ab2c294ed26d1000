"""Videos in a source folder, end to end on a real directory, real PyAV decoding and the real stores (SQLite and
MariaDB, Milvus Lite): synced as items with their container facts, a Live Photo's motion file set aside, bad files
refused with the reason; searched as moments mixed with photos (以图搜视频 finds the second a picture was taken
from); streamed with HTTP Range; a frame and a clip of the moment; moved, edited and deleted with the folder."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from adapters.stores.sql.sql_schema import images
from config import Settings
from operations.ingest import videos
from tests.conftest import wait_for_job
from tests.imagefiles import jpeg
from tests.videofiles import damage, pattern, write_audio_only, write_video

C = "clips"


@pytest.fixture
def client(metadata_url: str, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]):
    with make_client(make_settings(metadata_url, video_max_clip_seconds=5)) as client:
        yield client


def _folder(data_root: Path) -> Path:
    folder = data_root / f"phone_{uuid.uuid4().hex[:8]}"
    (folder / "DCIM").mkdir(parents=True)
    write_video(
        folder / "DCIM/beach.mp4", seconds=8, metadata={"creation_time": "2024-07-01T10:00:00Z"}, patterned=True
    )
    write_video(folder / "DCIM/city.mov", seconds=5, scene_offset=40, rotation_ccw=90, codec="libx265", patterned=True)
    (folder / "DCIM/IMG_0007.JPG").write_bytes(jpeg(7))
    write_video(folder / "DCIM/IMG_0007.MOV", seconds=2, scene_offset=2)  # its Live Photo motion
    (folder / "DCIM/photo.jpg").write_bytes(jpeg(8))
    (folder / "DCIM/empty.mp4").write_bytes(b"")
    whole = (folder / "DCIM/beach.mp4").read_bytes()
    (folder / "DCIM/cut_short.mp4").write_bytes(whole[: len(whole) // 2])  # a copy that stopped half-way
    write_audio_only(folder / "DCIM/voice.mp4")
    damage(write_video(folder / "DCIM/scratched.mkv", seconds=8, scene_offset=80).path)
    return folder


def _sync(client: TestClient, source_id: int) -> dict:
    response = client.post(f"/collections/{C}/sources/{source_id}/sync")
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    return job


def _rows(client: TestClient, kind: str) -> int:
    engine = client.app.state.services.metadata.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        query = select(func.count()).where(images.c.collection == C, images.c.kind == kind)
        return int(conn.execute(query).scalar_one())


def _picture_of_second(second: int, size: tuple[int, int] = (640, 360)) -> bytes:
    """What a person might search with: the planted scene of that second, re-rendered at another size, saved as a
    JPEG."""
    pixels = pattern(second, size).copy()
    pixels[:, size[0] // 2 : size[0] // 2 + 20] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).resize((size[0] // 2, size[1] // 2)).save(out, "JPEG", quality=80)
    return out.getvalue()


def _colour(picture: np.ndarray) -> np.ndarray:
    """The mean colour of a patch inside one block of the pattern (left of the bar, below the red corner)."""
    return picture[190:260, 25:90].reshape(-1, 3).mean(axis=0)


def _search_image(client: TestClient, picture: bytes, **form: str) -> list[dict]:
    response = client.post(
        "/img/search/image",
        data={"collection": C, "top_k": "10"} | form,
        files={"files": ("query.jpg", picture, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    return response.json()["results"][0]["hits"]


def test_videos_of_a_source_are_found_as_moments_and_watched(
    client: TestClient, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(data_root)
    source = client.post(f"/collections/{C}/sources", json={"path": folder.relative_to(data_root).as_posix()}).json()
    job = _sync(client, source["id"])
    counts = job["result"]["counts"]
    # 3 videos (one damaged part-way: indexed up to the damage) and 2 photos stored; the empty file, the one cut
    # short and the one with no picture refused, each with its reason.
    assert counts["stored"] == 5 and counts["rejected"] == 3, (counts, job["errors"])
    reasons = {e["file"]: e["reason"] for e in job["errors"]}
    assert "empty" in reasons["DCIM/empty.mp4"]
    assert "cut short" in reasons["DCIM/cut_short.mp4"] or "readable" in reasons["DCIM/cut_short.mp4"]
    assert "no video stream" in reasons["DCIM/voice.mp4"]
    assert "damaged" in reasons["DCIM/scratched.mkv"] and "indexed up to" in reasons["DCIM/scratched.mkv"]
    skipped = {s["path"]: s["reason"] for s in job["result"]["skipped_sample"]}
    assert "Live Photo" in skipped["DCIM/IMG_0007.MOV"] and "IMG_0007.JPG" in skipped["DCIM/IMG_0007.MOV"]
    assert client.get(f"/img/count?collection={C}").json()["count"] == 5  # samples are part of their video
    assert _rows(client, "video") == 3 and _rows(client, "frame") >= 8 + 5

    # The container's facts: duration, size as shown (the portrait HEVC turned), capture time.
    services = client.app.state.services  # type: ignore[attr-defined]
    beach_sha = videos.read_facts(folder / "DCIM/beach.mp4", 1 << 30).facts.sha256
    beach = services.metadata.lookup_sha(C, [beach_sha])[beach_sha]
    record = services.metadata.fetch(C, [beach.id])[beach.id]
    assert record.kind == "video" and record.mime == "video/mp4" and 7900 <= record.duration_ms <= 8100
    assert (record.width, record.height) == (640, 360) and record.taken_at is not None
    city_sha = videos.read_facts(folder / "DCIM/city.mov", 1 << 30).facts.sha256
    city = services.metadata.fetch(C, [services.metadata.lookup_sha(C, [city_sha])[city_sha].id])
    assert [(r.width, r.height, r.mime) for r in city.values()] == [(360, 640, "video/quicktime")]

    # 以图搜视频: a picture of second 5 of the beach finds that moment first, photos and moments in one list.
    hits = _search_image(client, _picture_of_second(5))
    first = hits[0]
    assert first["kind"] == "video" and first["image_id"] == beach.image_id, hits
    moment = first["video"]
    assert moment["start_ms"] <= 5500 < moment["end_ms"] and 5000 <= moment["best_ms"] < 6000, moment
    assert moment["duration_ms"] == record.duration_ms
    assert len([h for h in hits if h["image_id"] == beach.image_id]) <= 3  # a video fills at most a few places
    assert {h["kind"] for h in hits} == {"video", "photo"}
    four = _search_image(client, _picture_of_second(5), top_k="4")
    later = _search_image(client, _picture_of_second(5), top_k="2", offset="2")
    assert [(h["image_id"], h["video"]) for h in later] == [(h["image_id"], h["video"]) for h in four[2:]]
    only_photos = _search_image(client, _picture_of_second(5), filters='{"kinds": ["photo"]}')
    assert only_photos and {h["kind"] for h in only_photos} == {"photo"}
    only_videos = _search_image(client, _picture_of_second(5), filters='{"kinds": ["video"]}')
    assert only_videos and {h["kind"] for h in only_videos} == {"video"}

    # The moment's thumbnail is its stored sample; more like this from it finds the same video.
    frame = client.get(moment["frame_url"].removeprefix("http://testserver"))
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    similar = client.get(f"/img/{C}/{moment['frame_image_id']}/similar?top_k=3").json()
    assert similar["hits"][0]["image_id"] == beach.image_id and similar["hits"][0]["kind"] == "video"

    # Watching: the file streams in ranges; a frame and a clip of the moment.
    whole = (folder / "DCIM/beach.mp4").read_bytes()
    ranged = client.get(f"/img/{C}/{beach.image_id}", headers={"Range": "bytes=100-1099"})
    assert ranged.status_code == 206 and ranged.content == whole[100:1100]
    assert ranged.headers["accept-ranges"] == "bytes" and ranged.headers["etag"]
    assert ranged.headers["content-type"] == "video/mp4"
    assert client.get(f"/img/{C}/{beach.image_id}").content == whole
    shot = client.get(f"/img/{C}/{beach.image_id}/frame?t=3500")
    assert shot.status_code == 200
    colour = _colour(np.asarray(Image.open(io.BytesIO(shot.content)).convert("RGB")))
    assert np.abs(colour - pattern(3, (640, 360))[220, 50]).max() < 20, colour
    clip = client.get(f"/img/{C}/{beach.image_id}/clip?start_ms=2000&end_ms=4000&download=true")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert "attachment" in clip.headers["content-disposition"]
    with av.open(io.BytesIO(clip.content)) as played:
        frames = list(played.decode(video=0))
    assert 55 <= len(frames) <= 61 and frames[0].pts is not None
    opening = _colour(frames[0].to_ndarray(format="rgb24"))
    assert np.abs(opening - pattern(2, (640, 360))[220, 50]).max() < 20, opening  # plays from its first frame
    for bad in (
        f"/img/{C}/{beach.image_id}/clip?start_ms=0&end_ms=7000",  # over the 5 s limit
        f"/img/{C}/{beach.image_id}/clip?start_ms=3000&end_ms=2000",
        f"/img/{C}/{beach.image_id}/frame?t=99000",
    ):
        response = client.get(bad)
        assert response.status_code == 422 and response.json()["error"]["message"], bad
    photo_id = next(h["image_id"] for h in hits if h["kind"] == "photo")
    assert client.get(f"/img/{C}/{photo_id}/frame?t=0").status_code == 404

    # Near-duplicates are a photo matter: a video's samples (alike by nature) are never grouped or deleted.
    done = wait_for_job(client, client.post(f"/collections/{C}/duplicates", json={"min_cosine": 0.5}).json()["job_id"])
    assert done["state"] == "succeeded" and done["total"] == 2, done  # the two photos only
    grouped = client.get(f"/collections/{C}/duplicates").json()["groups"]
    members = {m["image_id"] for g in grouped for m in [g["keeper"], *g["extras"]]}
    assert members <= {h["image_id"] for h in only_photos} | {photo_id}, grouped

    # An unchanged folder: no video is opened again. A move is a move (no decode), a deletion takes the frames.
    opened: list[str] = []
    real_read = videos.read_facts
    monkeypatch.setattr(videos, "read_facts", lambda path, limit: opened.append(str(path)) or real_read(path, limit))
    again = _sync(client, source["id"])
    assert again["result"]["counts"]["unchanged"] == 5 and opened == []
    (folder / "DCIM/old").mkdir()
    (folder / "DCIM/city.mov").rename(folder / "DCIM/old/city.mov")
    encoded: list[str] = []
    real_encode = videos.encode
    monkeypatch.setattr(videos, "encode", lambda *a, **k: encoded.append("x") or real_encode(*a, **k))
    moved = _sync(client, source["id"])
    assert moved["result"]["counts"]["moved"] == 1 and encoded == []
    frames_before = _rows(client, "frame")
    (folder / "DCIM/beach.mp4").unlink()
    gone = _sync(client, source["id"])
    assert gone["result"]["counts"]["removed"] == 1
    assert _rows(client, "video") == 2 and 0 < _rows(client, "frame") < frames_before
    assert client.get(f"/img/{C}/{beach.image_id}").status_code == 404
    assert all(h["image_id"] != beach.image_id for h in _search_image(client, _picture_of_second(5)))


def test_uploaded_and_ingested_videos_are_kept_streamed_and_removed_with_their_rows(
    client: TestClient, data_root: Path, tmp_path: Path
) -> None:
    """A video has no place in a database row: the service keeps the file (one per content) and streams it."""
    clip = write_video(tmp_path / "upload.mp4", seconds=4, patterned=True).path
    data = clip.read_bytes()
    files = [("files", ("家庭聚会.mp4", data, "video/mp4")), ("files", ("photo.jpg", jpeg(3), "image/jpeg"))]
    uploaded = client.post("/img/upload", data={"collection": C}, files=files)
    assert uploaded.status_code == 200 and uploaded.json()["stored"] == 2, uploaded.text
    video_id = uploaded.json()["results"][0]["image_id"]
    again = client.post("/img/upload", data={"collection": C}, files=files[:1]).json()
    assert again["results"][0]["status"] == "duplicate"
    ranged = client.get(f"/img/{C}/{video_id}", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == data[:10]
    kept = client.app.state.services.video_store  # type: ignore[attr-defined]
    assert kept.find(C, videos.read_facts(clip, 1 << 30).facts.sha256) is not None
    hits = client.post("/img/search", json={"collection": C, "text": "家庭聚会", "mode": "keyword"}).json()["hits"]
    assert [(h["image_id"], h["kind"]) for h in hits] == [(video_id, "video")]  # found by its file name

    # A folder ingest takes videos as well; a bad one is listed with its reason.
    folder = data_root / f"ingest_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    write_video(folder / "walk.mov", seconds=3, scene_offset=20, patterned=True)
    write_audio_only(folder / "song.mp4")
    job = wait_for_job(client, client.post("/img/ingest", json={"collection": C, "path": folder.name}).json()["job_id"])
    assert job["state"] == "succeeded" and job["loaded"] == 1, job
    assert [e["file"] for e in job["errors"]] == ["song.mp4"] and "no video stream" in job["errors"][0]["reason"]
    assert client.get(f"/img/count?collection={C}").json()["count"] == 3

    # Deleting the video deletes its frames and the kept file.
    assert client.delete(f"/img/{C}/{video_id}").status_code == 200
    assert kept.find(C, videos.read_facts(clip, 1 << 30).facts.sha256) is None
    assert client.get(f"/img/{C}/{video_id}").status_code == 404
    assert _rows(client, "frame") > 0 and _rows(client, "video") == 1  # the ingested one stays


def test_an_upload_over_the_video_limit_is_refused_with_413(
    metadata_url: str,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
    tmp_path: Path,
) -> None:
    data = write_video(tmp_path / "big.mp4", seconds=3).path.read_bytes()
    with make_client(make_settings(metadata_url, max_video_bytes=len(data) // 2)) as small:
        response = small.post("/img/upload", data={"collection": C}, files=[("files", ("big.mp4", data, "video/mp4"))])
        assert response.status_code == 413 and "video limit" in response.json()["error"]["message"], response.text
        assert not list((small.app.state.services.video_store.root / C).glob("*"))  # type: ignore[attr-defined]
