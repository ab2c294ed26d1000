"""OCR: PP-OCRv4 (rapidocr-onnxruntime) reads Chinese text drawn into pictures; with IMGSEARCH_OCR=on uploads are
read as they are stored, the OCR job reads a collection (skipping what it read before), the words become
searchable with their boxes, and a service without the OCR extra starts and says so."""

from __future__ import annotations

import io
import random
import uuid

import pytest
from PIL import Image

from adapters import ocr
from tests.conftest import wait_for_job
from tests.text_pictures import draw, lines_for, text_pictures


def test_the_reader_reads_chinese_lines_with_their_boxes() -> None:
    rng = random.Random(5)
    lines = lines_for("receipt", rng)
    image = draw(lines, rng)
    found = ocr.OcrReader(threads=2).read(image)
    text = "".join(line.text for line in found).replace(" ", "")
    for expected in lines[:2]:
        assert expected.replace(" ", "") in text, (expected, [line.text for line in found])
    for line in found:
        xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
        assert 0 <= min(xs) < max(xs) <= image.width + 1 and 0 <= min(ys) < max(ys) <= image.height + 1
        assert 0.5 <= line.confidence <= 1
    assert [line.box[0][1] for line in found] == sorted(line.box[0][1] for line in found)  # top to bottom


def _upload(client, collection: str, pictures: dict[str, bytes]) -> dict[str, str]:
    files = [("files", (name, data, "image/jpeg")) for name, data in pictures.items()]
    body = client.post("/img/upload", data={"collection": collection}, files=files).json()
    assert body["stored"] == len(pictures), body
    return {r["file"]: r["image_id"] for r in body["results"]}


def test_uploads_are_read_at_ingest_and_found_by_their_words(metadata_url, make_settings, make_client) -> None:
    pictures, texts = text_pictures(4, seed=11)
    with make_client(make_settings(metadata_url, ocr="on")) as client:
        assert client.get("/healthz").json()["ocr"] == "on"
        ids = _upload(client, "receipts", pictures)
        receipt = ids["receipt0.jpg"]
        body = client.get(f"/img/receipts/{receipt}/text").json()
        assert body["ocr_done"] and "增值税普通发票" in body["ocr"].replace(" ", "")
        # Boxes in the original's pixels, not those of the 1600-pixel copy OCR read: as on the drawing, times 4.
        assert Image.open(io.BytesIO(pictures["receipt0.jpg"])).width > 1600
        drawn = Image.open(io.BytesIO(pictures["receipt0.jpg"])).reduce(4)
        expected = max(x for line in ocr.OcrReader(threads=2).read(drawn) for x, _ in line.box) * 4
        right = max(x for line in body["ocr_lines"] for x, _ in line["box"])
        assert right == pytest.approx(expected, rel=0.05)
        hits = client.post(
            "/img/search", json={"collection": "receipts", "text": "发票", "mode": "keyword", "top_k": 10}
        ).json()["hits"]
        assert [h["image_id"] for h in hits] == [receipt]
        assert hits[0]["match"]["snippets"][0]["field"] == "ocr"
        shop = texts["receipt0.jpg"][0]
        hybrid = client.post(
            "/img/search", json={"collection": "receipts", "text": shop, "top_k": 4, "mode": "hybrid"}
        ).json()
        assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["image_id"] == receipt


def test_the_ocr_job_reads_a_collection_once_and_again_on_request(metadata_url, make_settings, make_client) -> None:
    pictures, texts = text_pictures(4, seed=12)
    with make_client(make_settings(metadata_url)) as client:
        assert client.get("/healthz").json()["ocr"] == "off"
        ids = _upload(client, "signs", pictures)
        timetable = ids["timetable1.jpg"]
        assert client.get(f"/img/signs/{timetable}/text").json()["ocr_done"] is False
        line = texts["timetable1.jpg"][0]  # 地铁N号线
        keyword = {"collection": "signs", "text": line[2:], "mode": "keyword"}
        assert client.post("/img/search", json=keyword).json()["hits"] == []

        job = wait_for_job(client, client.post("/collections/signs/ocr").json()["job_id"])
        assert job["state"] == "succeeded", job
        assert (job["loaded"], job["skipped"]) == (4, 0)
        assert [h["image_id"] for h in client.post("/img/search", json=keyword).json()["hits"]] == [timetable]

        again = wait_for_job(client, client.post("/collections/signs/ocr").json()["job_id"])
        assert (again["loaded"], again["skipped"]) == (0, 4)  # read before: not read again
        redo = wait_for_job(client, client.post("/collections/signs/ocr", json={"redo": True}).json()["job_id"])
        assert (redo["loaded"], redo["skipped"]) == (4, 0)
        assert client.post("/collections/nope/ocr").status_code == 404


def test_without_the_ocr_extra_the_service_starts_and_says_so(
    metadata_url, make_settings, make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ocr, "available", lambda: False)
    pictures, _ = text_pictures(1, seed=13)
    with make_client(make_settings(metadata_url, ocr="on")) as client:
        assert client.get("/healthz").json()["ocr"] == "unavailable"
        ids = _upload(client, "plain", pictures)  # stored, not read
        assert client.get(f"/img/plain/{next(iter(ids.values()))}/text").json()["ocr_done"] is False
        response = client.post("/collections/plain/ocr")
        assert response.status_code == 409
        assert "rapidocr-onnxruntime" in response.json()["error"]["message"]


def test_a_synced_folder_is_read_and_found_by_its_words_and_file_names(
    metadata_url, make_settings, make_client, data_root
) -> None:
    folder = data_root / f"scans_{uuid.uuid4().hex[:8]}"
    (folder / "2024").mkdir(parents=True)
    pictures, texts = text_pictures(2, seed=14)
    for name, data in pictures.items():
        (folder / "2024" / name).write_bytes(data)
    with make_client(make_settings(metadata_url, ocr="on")) as client:
        source = client.post("/collections/scans/sources", json={"path": folder.name}).json()
        url = f"/collections/scans/sources/{source['id']}/sync"

        def sync() -> dict:
            return wait_for_job(client, client.post(url).json()["job_id"])

        assert sync()["state"] == "succeeded"
        words = {"collection": "scans", "mode": "keyword", "top_k": 10}
        found = client.post("/img/search", json={**words, "text": "增值税普通发票"}).json()["hits"]
        assert [h["paths"] for h in found] == [[f"{folder.name}/2024/receipt0.jpg"]]
        assert found[0]["match"]["snippets"][0]["field"] == "ocr"
        (folder / "2024" / "receipt0.jpg").rename(folder / "2024" / "发票_午餐.jpg")  # renamed: found by the new name
        assert sync()["result"]["counts"]["moved"] == 1
        renamed = client.post("/img/search", json={**words, "text": "午餐"}).json()["hits"]
        assert [h["image_id"] for h in renamed] == [found[0]["image_id"]]
        assert renamed[0]["match"]["snippets"][0]["field"] == "name"
        assert client.post("/img/search", json={**words, "text": "receipt0"}).json()["hits"] == []
        assert len(texts) == 2


def test_subtitles_in_a_synced_video_are_read_and_found_as_its_moment(
    metadata_url, make_settings, make_client, data_root
) -> None:
    """With OCR on, the samples of a video are read as they are taken: a subtitle's words find the moment it is on
    screen (keyword and hybrid), not the whole video."""
    from tests.videofiles import write_video

    folder = data_root / f"films_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    write_video(
        folder / "trip.mp4", seconds=8, patterned=True, subtitles={5: "明天去外滩看日落", 6: "明天去外滩看日落"}
    )
    with make_client(make_settings(metadata_url, ocr="on")) as client:
        source = client.post("/collections/films/sources", json={"path": folder.name}).json()
        job = wait_for_job(client, client.post(f"/collections/films/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 1, job
        for mode in ("keyword", "hybrid"):
            body = {"collection": "films", "text": "外滩看日落", "mode": mode, "top_k": 5}
            hits = client.post("/img/search", json=body).json()["hits"]
            assert hits and hits[0]["kind"] == "video", (mode, hits)
            moment = hits[0]["video"]
            assert 5000 <= moment["best_ms"] < 7000 and moment["start_ms"] >= 4000, (mode, moment)
            assert hits[0]["match"]["keyword_rank"] is not None and hits[0]["match"]["snippets"], hits[0]["match"]
