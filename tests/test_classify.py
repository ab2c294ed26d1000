"""POST /img/classify: zero-shot label probabilities equal to cn_clip's get_similarity, the same on torch and ONNX,
for uploads and stored images, with label vectors cached."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters.encoders.clip_encoder import ChineseClipEncoder
from app.main import create_app
from operations.labels.zero_shot_prompts import IMAGENET
from tests.imagefiles import jpeg, picture

POKEMON = ["杰尼龟", "妙蛙种子", "小火龙", "皮卡丘"]


def _get_similarity(encoder: ChineseClipEncoder, image_bytes: bytes, texts: list[str]) -> np.ndarray:
    """The source document's 1.1, verbatim in spirit: cn_clip's own model.get_similarity on the same inputs."""
    import torch
    from cn_clip.clip import tokenize
    from PIL import Image

    model = encoder._model
    image = encoder._preprocess(Image.open(io.BytesIO(image_bytes)).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        logits_per_image, _ = model.get_similarity(image, tokenize(texts))
    return logits_per_image.softmax(dim=-1).numpy()[0]


@pytest.fixture
def client(make_settings, make_client):
    with make_client(make_settings(backend="torch")) as client:
        yield client


def _classify(client: TestClient, labels: list[str], image: bytes | None = None, **form: object):
    files = [("file", ("q.jpg", image, "image/jpeg"))] if image is not None else None
    data = {"labels": labels, **form}
    return client.post("/img/classify", data=data, files=files)


def test_probabilities_equal_cn_clip_get_similarity(client: TestClient, encoder: ChineseClipEncoder) -> None:
    image = jpeg(7)
    body = _classify(client, POKEMON, image, prompts="none").json()
    expected = _get_similarity(encoder, image, POKEMON)
    got = {row["label"]: row["probability"] for row in body["labels"]}
    assert np.allclose([got[label] for label in POKEMON], expected, atol=1e-5), (got, expected)
    assert [row["label"] for row in body["labels"]] == [POKEMON[i] for i in np.argsort(-expected, kind="stable")]
    assert sum(got.values()) == pytest.approx(1.0, abs=1e-6)
    assert body["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-5) and body["templates"] == ["{}"]
    # the raw cosine is reported too, and orders the labels the same way
    cosines = [row["cosine"] for row in body["labels"]]
    assert cosines == sorted(cosines, reverse=True) and all(-1 <= c <= 1 for c in cosines)


def test_default_prompt_and_averaged_prompt_sets(client: TestClient, encoder: ChineseClipEncoder) -> None:
    image = jpeg(8)
    photo = _classify(client, POKEMON, image).json()
    assert photo["templates"] == ["{}的照片。"]
    expected = _get_similarity(encoder, image, [f"{label}的照片。" for label in POKEMON])
    got = {row["label"]: row["probability"] for row in photo["labels"]}
    assert np.allclose([got[label] for label in POKEMON], expected, atol=1e-5)
    # imagenet: the 80 prompts, each label's vector the normalised mean (cn_clip's zero_shot_classifier)
    many = _classify(client, POKEMON[:2], image, prompts="imagenet").json()
    assert len(many["templates"]) == 80 == len(IMAGENET)
    vectors = encoder.encode_text([t.replace("{}", POKEMON[0]) for t in IMAGENET])
    mean = vectors.mean(axis=0)
    mean /= np.linalg.norm(mean)
    image_vector = encoder.encode_images([picture(8)])[0]  # the same picture jpeg(8) encodes
    cosine = {row["label"]: row["cosine"] for row in many["labels"]}[POKEMON[0]]
    assert cosine == pytest.approx(float(mean @ image_vector), abs=1e-4)
    own = _classify(client, POKEMON, image, template=["一张{}的图片", "{}的画"]).json()
    assert own["templates"] == ["一张{}的图片", "{}的画"]


def test_a_stored_image_is_scored_from_its_vector_and_labels_are_cached(client: TestClient) -> None:
    image = jpeg(9)
    stored = client.post("/img/upload", data={"collection": "zs"}, files=[("files", ("a.jpg", image, "image/jpeg"))])
    image_id = stored.json()["results"][0]["image_id"]
    by_id = _classify(client, POKEMON, collection="zs", image_id=image_id).json()
    by_upload = _classify(client, POKEMON, image).json()
    assert [r["label"] for r in by_id["labels"]] == [r["label"] for r in by_upload["labels"]]
    assert np.allclose([r["probability"] for r in by_id["labels"]], [r["probability"] for r in by_upload["labels"]])
    services = client.app.state.services
    misses = services.label_vectors.misses
    again = _classify(client, POKEMON, collection="zs", image_id=image_id).json()
    assert services.label_vectors.misses == misses and again["labels"] == by_id["labels"]
    assert again["timings_ms"]["labels"] < by_id["timings_ms"]["labels"] + 50
    missing = _classify(client, POKEMON, collection="zs", image_id="nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_torch_and_onnx_give_the_same_numbers(make_settings, encoder: ChineseClipEncoder) -> None:
    image = jpeg(10)
    answers = []
    for backend in ("torch", "auto"):
        settings = make_settings(backend=backend)
        shared = encoder if backend == "torch" else None
        with TestClient(create_app(settings, encoder=shared), raise_server_exceptions=False) as http:
            body = _classify(http, POKEMON, image).json()
            assert http.get("/healthz").json()["model"]["backend"] == ("torch" if shared else "onnx")
            answers.append({row["label"]: (row["probability"], row["cosine"]) for row in body["labels"]})
    torch_answer, onnx_answer = answers
    for label in POKEMON:
        assert onnx_answer[label] == pytest.approx(torch_answer[label], abs=1e-5)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"labels": ["一"]}, "2 to 1000 labels"),
        ({"labels": ["\n".join(f"l{i}" for i in range(1001))]}, "2 to 1000 labels"),
        ({"labels": ["猫", "猫"]}, "repeated"),
        ({"labels": ["猫", "  "]}, "must not be empty"),
        ({"labels": ["猫", "狗"], "template": ["没有占位"]}, "exactly once"),
        ({"labels": ["猫", "狗"], "template": ["{}和{}"]}, "exactly once"),
        ({"labels": ["猫", "狗"], "prompts": "poems"}, "unknown prompt set"),
        ({"labels": ["猫", "狗"], "collection": "zs"}, "not both"),
    ],
)
def test_bad_label_requests_are_refused(client: TestClient, form: dict, message: str) -> None:
    image = None if "collection" in form else jpeg(1)
    response = _classify(client, form.pop("labels"), image, **form)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_labels_one_per_line_from_a_text_box(client: TestClient) -> None:
    body = _classify(client, ["猫\n狗\n\n鸟"], jpeg(2)).json()
    assert sorted(row["label"] for row in body["labels"]) == ["狗", "猫", "鸟"]
    # a thousand labels fit in one field (repeated fields stop at the form parser's 1,000-field limit)
    many = _classify(client, ["\n".join(f"标签{i}" for i in range(1000))], jpeg(2))
    assert many.status_code == 200 and len(many.json()["labels"]) == 1000
    assert sum(row["probability"] for row in many.json()["labels"]) == pytest.approx(1.0, abs=1e-6)
