"""Combined queries: a text, an image and a negative text with weights. One part alone gives today's results
exactly; the weights move results as a user expects."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters.encoders.clip_encoder import ChineseClipEncoder
from tests.imagefiles import jpeg

COUNT = 40


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, data_root, onnx_dir, encoder: ChineseClipEncoder):
    from app.main import create_app
    from config import Settings

    settings = Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("combined"),
        data_root=data_root,
        weights="random",
        backend="torch",
        onnx_dir=onnx_dir,
    )
    with TestClient(create_app(settings, encoder=encoder), raise_server_exceptions=False) as client:
        ids = []
        for start in (0, COUNT // 2):  # two requests: at most 32 files each
            files = [("files", (f"{i}.jpg", jpeg(500 + i), "x")) for i in range(start, start + COUNT // 2)]
            stored = client.post("/img/upload", data={"collection": "mix"}, files=files).json()
            assert stored["stored"] == COUNT // 2, stored
            ids += [r["image_id"] for r in stored["results"]]
        yield client, ids


def _ids(body: dict) -> list[str]:
    return [hit["image_id"] for hit in body["hits"]]


def _search(client: TestClient, **body: object) -> dict:
    response = client.post("/img/search", json={"mode": "semantic", "collection": "mix", "top_k": 10, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_one_part_alone_gives_todays_results(gallery, encoder: ChineseClipEncoder) -> None:
    client, ids = gallery
    services = client.app.state.services
    text = _search(client, text="红色的圆形")
    part = {k: v for k, v in text["query"]["parts"][0].items() if v is not None}
    assert part == {"kind": "text", "weight": 1.0, "text": "红色的圆形"} and text["query"]["combined"] is False
    vector = encoder.encode_text(["红色的圆形"])[0]
    expected = services.vectors.search("mix", vector[None, :], 10)[0]
    assert [hit["id"] for hit in text["hits"]] == [i for i, _ in expected]
    assert np.allclose([hit["score"] for hit in text["hits"]], [s for _, s in expected], atol=1e-6)
    # a zero weight drops a part: the image with weight 0 leaves the text search as it was
    assert _ids(_search(client, text="红色的圆形", image_id=ids[3], image_weight=0)) == _ids(text)

    upload = jpeg(503)  # the bytes of ids[3]
    plain = client.post(
        "/img/search/image", data={"collection": "mix", "top_k": 10}, files=[("files", ("q.jpg", upload, "x"))]
    ).json()["results"][0]["hits"]
    combined = client.post(
        "/img/search/combined", data={"collection": "mix", "top_k": 10}, files=[("file", ("q.jpg", upload, "x"))]
    ).json()
    assert [h["image_id"] for h in combined["hits"]] == [h["image_id"] for h in plain]
    assert [h["score"] for h in combined["hits"]] == [h["score"] for h in plain]

    stored = _search(client, image_id=ids[3])  # a stored image alone: its own vector, itself first
    similar = client.get(f"/img/mix/{ids[3]}/similar", params={"top_k": 9}).json()
    assert _ids(stored) == [ids[3], *[h["image_id"] for h in similar["hits"]]]
    assert stored["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_the_weights_move_results_the_way_a_user_expects(gallery, encoder: ChineseClipEncoder) -> None:
    client, ids = gallery
    text = "蓝色的海和白色的帆船"
    text_only = _ids(_search(client, text=text, top_k=COUNT))
    target = text_only[-1]  # the image the text likes least
    ranks = []
    for weight in (0.0, 0.05, 0.2, 1.0, 10.0):
        body = _search(client, text=text, image_id=target, image_weight=weight, top_k=COUNT)
        ranks.append(_ids(body).index(target))
        assert body["query"]["combined"] is (weight > 0)
    assert ranks == sorted(ranks, reverse=True) and ranks[0] == COUNT - 1 and ranks[-1] == 0, ranks

    # a negative text: the kept hits are less like it, the more it weighs (exactly so for a linear score)
    services = client.app.state.services
    unwanted = encoder.encode_text(["人物"])[0]

    def likeness(body: dict) -> float:
        vectors = services.vectors.get("mix", [hit["id"] for hit in body["hits"]])
        return float(np.mean([vectors[hit["id"]] @ unwanted for hit in body["hits"]]))

    base = _search(client, image_id=ids[0])
    lighter = _search(client, image_id=ids[0], negative_text="人物", negative_weight=0.5)
    heavier = _search(client, image_id=ids[0], negative_text="人物", negative_weight=3)
    assert likeness(heavier) <= likeness(lighter) <= likeness(base)
    assert likeness(heavier) < likeness(base) and _ids(heavier) != _ids(base)
    negative = heavier["query"]["parts"][1]
    assert (negative["kind"], negative["weight"], negative["text"]) == ("negative_text", 3.0, "人物")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "猫", "text_weight": 0}, "sum to zero"),
        ({"negative_text": "人物"}, "sum to zero"),
        ({}, "give a text, an image or both"),
        ({"text": "猫", "text_weight": -1}, "from 0 to 100"),
        ('{"text": "猫", "text_weight": 1e309}', "from 0 to 100"),  # infinity, as a JSON number
        ({"text": "猫", "negative_text": "猫"}, "cancel each other out"),
    ],
)
def test_bad_combinations_are_refused(gallery, body: dict | str, message: str) -> None:
    client, _ = gallery
    if isinstance(body, str):
        raw = body.replace("{", '{"collection": "mix", ', 1).encode()
        response = client.post("/img/search", content=raw, headers={"content-type": "application/json"})
    else:
        response = client.post("/img/search", json={"mode": "semantic", "collection": "mix", **body})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_unknown_or_doubled_images_are_refused(gallery) -> None:
    client, ids = gallery
    missing = client.post(
        "/img/search", json={"mode": "semantic", "collection": "mix", "text": "猫", "image_id": "nope"}
    )
    assert missing.status_code == 404
    both = client.post(
        "/img/search/combined",
        data={"collection": "mix", "image_id": ids[0], "text": "猫"},
        files=[("file", ("q.jpg", jpeg(1), "x"))],
    )
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"]
