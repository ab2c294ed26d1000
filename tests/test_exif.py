"""Phone photos' EXIF: capture time (with its offset), camera and GPS position read at ingest (JPEG and HEIC),
kept in the metadata row and in the vector's fields, filtered inside the vector search (the filtered top-k equals
a brute-force ranking of the matching images), sorted by capture time, and cut by a minimum score. On Milvus Lite
and on a Milvus server."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from adapters import images
from config import Settings
from operations.search.search_filters import great_circle_km
from tests.imagefiles import photo

C = "phone"
SHANGHAI, BEIJING, PARIS = (31.2304, 121.4737), (39.9042, 116.4074), (48.8566, 2.3522)
# (taken, offset, make, model, position)
PHOTOS = [
    ("2023:01:15 09:00:00", "+08:00", "Apple", "iPhone 15 Pro", SHANGHAI),
    ("2023:06:01 18:30:00", "+08:00", "Apple", "iPhone 15 Pro", BEIJING),
    ("2024:02:10 12:00:00", "+01:00", "HUAWEI", "HUAWEI P60", PARIS),
    ("2024:08:20 07:45:00", None, "Xiaomi", "Xiaomi 14", SHANGHAI),
    ("2025:03:03 21:10:00", "+08:00", "HUAWEI", "P60", None),
    (None, None, None, None, None),  # a screenshot: no EXIF at all
]


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return (float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4))


def exif_photo(seed: int, taken, offset, make, model, position, fmt: str = "JPEG") -> bytes:  # type: ignore[no-untyped-def]
    exif = Image.Exif()
    if make:
        exif[0x010F], exif[0x0110] = make, model
    if taken:
        details = exif.get_ifd(0x8769)
        details[0x9003] = taken
        if offset:
            details[0x9011] = offset
    if position:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if position[0] >= 0 else "S"), _dms(position[0])
        gps[3], gps[4] = ("E" if position[1] >= 0 else "W"), _dms(position[1])
    buffer = io.BytesIO()
    photo(seed).save(buffer, format=fmt, quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF"])
def test_exif_is_read_from_the_header(fmt: str) -> None:
    data = exif_photo(1, "2024:05:01 08:30:00", "+08:00", "Apple", "iPhone 15 Pro", SHANGHAI, fmt)
    facts = images.probe(data, 10**7, 10**8)
    assert facts.taken_at == dt.datetime(2024, 5, 1, 0, 30) and facts.taken_offset == "+08:00"  # UTC
    assert facts.camera == "Apple iPhone 15 Pro"
    assert facts.latitude == pytest.approx(SHANGHAI[0], abs=1e-4)
    assert facts.longitude == pytest.approx(SHANGHAI[1], abs=1e-4)
    local = images.probe(exif_photo(2, "2024:05:01 08:30:00", None, "HUAWEI", "HUAWEI P60", None), 10**7, 10**8)
    assert local.taken_at == dt.datetime(2024, 5, 1, 8, 30) and local.taken_offset is None  # the camera's clock
    assert local.camera == "HUAWEI P60" and local.latitude is None  # the model already names the maker
    bare = images.probe(exif_photo(3, None, None, None, None, None), 10**7, 10**8)
    assert (bare.taken_at, bare.camera, bare.latitude) == (None, None, None)


@pytest.fixture
def phone(
    milvus_target: dict[str, str],
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
):
    with make_client(make_settings(milvus=milvus_target)) as client:
        files = [("files", (f"p{i}.jpg", exif_photo(10 + i, *spec), "image/jpeg")) for i, spec in enumerate(PHOTOS)]
        stored = client.post("/img/upload", data={"collection": C}, files=files).json()["results"]
        yield client, [r["image_id"] for r in stored]


def _search(client: TestClient, **body: object) -> dict:
    response = client.post(
        "/img/search", json={"mode": "semantic", "collection": C, "text": "城市的照片", "top_k": 10, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _brute_force(client: TestClient, image_ids: list[str], keep: Callable[[int], bool]) -> list[str]:
    """The matching images ranked by cosine to the same query, from the stored vectors."""
    services = client.app.state.services  # type: ignore[attr-defined]
    query = services.encoder.encode_text(["城市的照片"])[0]
    rows = {services.metadata.get_image(C, i).id: i for i in image_ids}
    vectors = services.vectors.get(C, list(rows))
    scored = [(float(np.dot(vectors[r], query)), rows[r]) for r in rows if keep(image_ids.index(rows[r]))]
    return [image_id for _, image_id in sorted(scored, reverse=True)]


def test_distances_are_great_circle_distances() -> None:
    assert great_circle_km(*SHANGHAI, *BEIJING) == pytest.approx(1067, abs=2)
    assert great_circle_km(*SHANGHAI, *PARIS) == pytest.approx(9260, abs=15)
    assert great_circle_km(0, 179.5, 0, -179.5) == pytest.approx(111.2, abs=0.1)  # across the antimeridian


def test_capture_time_camera_and_place_filter_inside_the_search(phone) -> None:  # type: ignore[no-untyped-def]
    client, ids = phone
    everything = _search(client)
    hit = next(h for h in everything["hits"] if h["image_id"] == ids[0])
    assert hit["taken_at"].startswith("2023-01-15T01:00") and hit["taken_offset"] == "+08:00"
    assert hit["camera"] == "Apple iPhone 15 Pro" and hit["latitude"] == pytest.approx(SHANGHAI[0], abs=1e-4)

    cases = {
        "2024 and later": ({"taken_after": "2024-01-01T00:00:00Z"}, lambda i: i in (2, 3, 4)),
        "before June 2023": ({"taken_before": "2023-05-31T23:59:59Z"}, lambda i: i == 0),
        "Huawei": ({"camera": ["HUAWEI P60"]}, lambda i: i in (2, 4)),
        "within 50 km of Shanghai": ({"near": {"lat": 31.23, "lon": 121.47, "km": 50}}, lambda i: i in (0, 3)),
        "within 1,500 km of Shanghai": ({"near": {"lat": 31.23, "lon": 121.47, "km": 1500}}, lambda i: i in (0, 1, 3)),
        # Beijing, 1,067 km away, lies in a corner of the 1,000 km box around Shanghai: a circle leaves it out
        "within 1,000 km of Shanghai": ({"near": {"lat": 31.23, "lon": 121.47, "km": 1000}}, lambda i: i in (0, 3)),
        "within 1,100 km of Shanghai": ({"near": {"lat": 31.23, "lon": 121.47, "km": 1100}}, lambda i: i in (0, 1, 3)),
    }
    for name, (filters, keep) in cases.items():
        found = [h["image_id"] for h in _search(client, filters=filters)["hits"]]
        assert found == _brute_force(client, ids, keep), name

    bad = client.post(
        "/img/search",
        json={"mode": "semantic", "collection": C, "text": "x", "filters": {"near": {"lat": 95, "lon": 0}}},
    )
    assert bad.status_code == 422
    backwards = {"taken_after": "2025-01-01T00:00:00Z", "taken_before": "2024-01-01T00:00:00Z"}
    assert (
        client.post(
            "/img/search", json={"mode": "semantic", "collection": C, "text": "x", "filters": backwards}
        ).status_code
        == 422
    )


def test_sorted_by_capture_time_and_cut_by_a_minimum_score(phone) -> None:  # type: ignore[no-untyped-def]
    client, _ = phone
    best = _search(client, top_k=4)
    by_time = _search(client, top_k=4, sort="taken")
    assert {h["image_id"] for h in by_time["hits"]} == {h["image_id"] for h in best["hits"]}  # the same best four
    known = [h["taken_at"] is not None for h in by_time["hits"]]
    times = [h["taken_at"] for h in by_time["hits"] if h["taken_at"]]
    assert times == sorted(times) and known == sorted(known, reverse=True)  # oldest first, unknown last
    scores = sorted(h["score"] for h in _search(client)["hits"])
    threshold = scores[len(scores) // 2]
    cut = _search(client, min_score=threshold)
    assert all(h["score"] >= threshold for h in cut["hits"])
    assert cut["cut_by_min_score"] == sum(s < threshold for s in scores) > 0
