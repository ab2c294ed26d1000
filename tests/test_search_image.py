"""以图搜图, more like this, delete, and the results picture."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from config import Settings
from operations.search.results_picture import find_font
from tests.imagefiles import jpeg, resized_recompressed

COUNT = 40


def _id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


@pytest.fixture
def gallery(
    mysql_url: str,
    milvus_target: dict[str, str],
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
):
    """Uploaded into MySQL and, in turn, Milvus Lite and a Milvus server: every test here runs on both."""
    originals = [jpeg(500 + i) for i in range(COUNT)]
    with make_client(make_settings(mysql_url, milvus_target)) as client:
        for start in (0, COUNT // 2):
            half = originals[start : start + COUNT // 2]
            files = [("files", (f"{start + i}.jpg", data, "image/jpeg")) for i, data in enumerate(half)]
            response = client.post("/img/upload", data={"collection": "gallery"}, files=files)
            assert response.json()["stored"] == COUNT // 2, response.text
        yield client, originals


def _search(client: TestClient, *queries: bytes, top_k: int = 5) -> list[list[dict]]:
    files = [("files", (f"q{i}.jpg", data, "image/jpeg")) for i, data in enumerate(queries)]
    response = client.post("/img/search/image", data={"collection": "gallery", "top_k": str(top_k)}, files=files)
    assert response.status_code == 200, response.text
    return [result["hits"] for result in response.json()["results"]]


def test_exact_duplicate_ranks_its_source_first_with_score_one(gallery) -> None:
    client, originals = gallery
    for data in originals[:8]:
        hits = _search(client, data)[0]
        assert hits[0]["image_id"] == _id(data)
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert hits[1]["score"] < hits[0]["score"]


def test_resized_recompressed_copy_ranks_its_source_first(gallery) -> None:
    client, originals = gallery
    for start in (0, COUNT // 2):
        chunk = originals[start : start + COUNT // 2]
        results = _search(client, *[resized_recompressed(data) for data in chunk], top_k=3)
        assert [hits[0]["image_id"] for hits in results] == [_id(data) for data in chunk]


def test_several_query_images_give_one_list_each_in_order(gallery) -> None:
    client, originals = gallery
    results = _search(client, originals[3], originals[7], originals[11], top_k=4)
    assert [hits[0]["image_id"] for hits in results] == [_id(originals[i]) for i in (3, 7, 11)]
    assert all(len(hits) == 4 for hits in results)


def test_bad_query_image_is_a_4xx_naming_the_file(gallery) -> None:
    client, originals = gallery
    files = [("files", ("fine.jpg", originals[0], "image/jpeg")), ("files", ("broken.jpg", b"nope", "image/jpeg"))]
    response = client.post("/img/search/image", data={"collection": "gallery"}, files=files)
    assert response.status_code == 422 and "broken.jpg" in response.json()["error"]["message"]
    missing = client.post("/img/search/image", data={"collection": "nope"}, files=files[:1])
    assert missing.status_code == 404


def test_more_like_this_uses_the_stored_vector_and_leaves_the_image_out(gallery) -> None:
    client, originals = gallery
    target = _id(originals[5])
    response = client.get(f"/img/gallery/{target}/similar", params={"top_k": 6})
    assert response.status_code == 200
    similar = [h["image_id"] for h in response.json()["hits"]]
    assert len(similar) == 6 and target not in similar
    by_image = [h["image_id"] for h in _search(client, originals[5], top_k=7)[0]]
    assert by_image[0] == target and similar == by_image[1:]
    assert client.get("/img/gallery/unknown/similar").status_code == 404
    assert client.get(f"/img/gallery/{target}/similar", params={"top_k": 0}).status_code == 422


def test_deleted_image_is_gone_everywhere(gallery) -> None:
    client, originals = gallery
    target = _id(originals[2])
    deleted = client.delete(f"/img/gallery/{target}")
    assert deleted.status_code == 200 and deleted.json()["image_id"] == target
    assert client.get(f"/img/gallery/{target}").status_code == 404
    assert all(h["image_id"] != target for h in _search(client, originals[2], top_k=COUNT)[0])
    text_hits = client.post(
        "/img/search", json={"mode": "semantic", "collection": "gallery", "text": "图片", "top_k": COUNT}
    ).json()
    assert len(text_hits["hits"]) == COUNT - 1 and all(h["image_id"] != target for h in text_hits["hits"])
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.metadata.count("gallery", include_pending=True) == services.vectors.count("gallery") == COUNT - 1
    assert client.delete(f"/img/gallery/{target}").status_code == 404


def test_results_picture_shows_query_and_hits(gallery) -> None:
    client, _ = gallery
    response = client.get("/img/search.png", params={"collection": "gallery", "text": "红色的圆形", "top_k": 8})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    wider = Image.open(
        io.BytesIO(client.get("/img/search.png", params={"collection": "gallery", "text": "圆形", "top_k": 3}).content)
    )
    assert picture.height > wider.height  # 8 hits take two rows, 3 hits one
    assert client.get("/img/search.png", params={"collection": "nope", "text": "x"}).status_code == 404
    assert find_font(None) is not None, "no CJK font installed: Chinese captions would not render"
