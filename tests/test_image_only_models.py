"""Image-only models, as the source documents use for 以图搜图: torchvision ResNet50 / VGG16 and a user's ONNX."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import Settings
from tests.imagefiles import jpeg


def _exercise(client: TestClient, collection: str, model: str, dim: int, count: int) -> None:
    created = client.post("/collections", json={"name": collection, "model": model})
    assert created.status_code == 201, created.text
    assert (created.json()["model"], created.json()["dim"]) == (model, dim)
    originals = [jpeg(4000 + i) for i in range(count)]
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(originals)]
    assert client.post("/img/upload", data={"collection": collection}, files=files).json()["stored"] == count

    query = originals[1]
    hits = client.post(
        "/img/search/image", data={"collection": collection}, files=[("files", ("q.jpg", query, "image/jpeg"))]
    ).json()["results"][0]["hits"]
    assert hits[0]["image_id"] == hashlib.sha256(query).hexdigest()[:24] and hits[0]["score"] > 0.999

    text = client.post("/img/search", json={"mode": "semantic", "collection": collection, "text": "海边的日落"})
    assert text.status_code == 409 and "image-only" in text.json()["error"]["message"]
    embed = client.post("/embed/text", json={"texts": ["猫"], "model": model})
    assert embed.status_code == 422 and "image-only" in embed.json()["error"]["message"]
    similar = client.get(f"/img/{collection}/{hits[0]['image_id']}/similar", params={"top_k": 2})
    assert similar.status_code == 200 and len(similar.json()["hits"]) == 2


@pytest.mark.parametrize(("model", "dim", "count"), [("resnet50", 2048, 8), ("vgg16", 4096, 4)])
def test_torchvision_models(
    model: str, dim: int, count: int, make_settings: Callable[..., Settings], make_client: Callable
) -> None:
    with make_client(make_settings()) as client:
        _exercise(client, f"tv_{model}", model, dim, count)
        served = {m["name"]: m for m in client.get("/models").json()}
        assert served[model]["backend"] == "onnx", served  # the default backend (auto) serves it on ONNX Runtime


@pytest.mark.parametrize("model", ["resnet50", "vgg16"])
def test_torchvision_models_on_onnx_equal_torch(model: str, tmp_path: Path) -> None:
    """Like the source document: the same network through ONNX Runtime, the same vectors (dynamic batch)."""
    from adapters.encoders.onnx_image_encoder import OnnxImageEncoder
    from adapters.encoders.torchvision_encoder import TorchvisionEncoder
    from operations.models.export_onnx import export
    from tests.imagefiles import picture

    torch_encoder = TorchvisionEncoder(model, "random", tmp_path, seed=0, threads=2)
    folder = export(torch_encoder, tmp_path / "onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["model"], manifest["resize_shorter"], manifest["parity_min_cosine"] >= 0.99999) == (
        model,
        256,
        True,
    )
    onnx_encoder = OnnxImageEncoder(model, tmp_path / "onnx", threads=2, directory=folder)
    try:
        for batch in (1, 5):
            pictures = [picture(6100 + i).resize((200 + 37 * i, 150 + 11 * i)) for i in range(batch)]
            got, expected = onnx_encoder.encode_images(pictures), torch_encoder.encode_images(pictures)
            assert got.shape == expected.shape == (batch, onnx_encoder.info.dim)
            assert (got * expected).sum(axis=1).min() >= 0.99999
        assert onnx_encoder.info.backend == "onnx" and onnx_encoder.info.weights == "random"
    finally:
        onnx_encoder.close()
        torch_encoder.close()


def _tiny_onnx_model(folder: Path) -> None:
    """A user's own image-embedding model: a small CNN exported to ONNX, with its manifest."""
    import torch

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=2, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(6),
        torch.nn.Flatten(),
    ).eval()
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        torch.onnx.export(
            network,
            (torch.randn(1, 3, 96, 96),),
            str(folder / "model.onnx"),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_axes={"pixels": {0: "n"}, "embedding": {0: "n"}},
            dynamo=False,
        )
    manifest = {"input_size": 96, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "output_dim": 512}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_users_onnx_model(tmp_path: Path, make_settings: Callable[..., Settings], make_client: Callable) -> None:
    custom = tmp_path / "custom"
    _tiny_onnx_model(custom / "tiny")
    with make_client(make_settings(custom_models_dir=custom)) as client:
        _exercise(client, "mine", "onnx:tiny", 512, 6)
        missing = client.post("/collections", json={"name": "other", "model": "onnx:absent"})
        assert missing.status_code == 422 and "model.onnx" in missing.json()["error"]["message"]

    wrong = json.loads((custom / "tiny" / "manifest.json").read_text()) | {"output_dim": 300}
    (custom / "tiny" / "manifest.json").write_text(json.dumps(wrong))
    with make_client(make_settings(custom_models_dir=custom)) as client:
        refused = client.post("/collections", json={"name": "liar", "model": "onnx:tiny"})
        assert refused.status_code == 503 and "manifest says output_dim 300" in refused.json()["error"]["message"]
        assert "liar" not in {c["name"] for c in client.get("/collections").json()}
