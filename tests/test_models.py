"""Several models side by side: an RN50 and a ViT-B-16 collection over the same images, compared."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient

from config import Settings
from tests.imagefiles import jpeg, resized_recompressed

COUNT = 12


def test_two_models_over_the_same_images_compared(
    mysql_url: str, make_settings: Callable[..., Settings], make_client: Callable[[Settings], TestClient]
) -> None:
    originals = [jpeg(3000 + i) for i in range(COUNT)]
    files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(originals)]
    with make_client(make_settings(mysql_url, max_loaded_models=2)) as client:
        for name, model in (("rn", "RN50"), ("vit", "ViT-B-16")):
            assert client.post("/collections", json={"name": name, "model": model}).status_code == 201
            assert client.post("/img/upload", data={"collection": name}, files=files).json()["stored"] == COUNT
        listed = {c["name"]: (c["model"], c["dim"], c["count"]) for c in client.get("/collections").json()}
        assert listed == {"rn": ("RN50", 1024, COUNT), "vit": ("ViT-B-16", 512, COUNT)}
        assert {m["name"] for m in client.get("/models").json()} == {"RN50", "ViT-B-16"}

        services = client.app.state.services  # type: ignore[attr-defined]
        assert services.vectors.count("vit") == COUNT
        vit = services.models.get("ViT-B-16")
        embedded = client.post("/embed/text", json={"texts": ["海边"], "model": "ViT-B-16"}).json()
        assert embedded["dim"] == 512 and np.allclose(embedded["vectors"][0], vit.encode_text(["海边"])[0], atol=1e-5)

        # each collection searches with its own model: an exact copy finds itself in both
        query = originals[4]
        for name in ("rn", "vit"):
            hits = client.post(
                "/img/search/image", data={"collection": name}, files=[("files", ("q.jpg", query, "image/jpeg"))]
            ).json()["results"][0]["hits"]
            assert hits[0]["image_id"] == hashlib.sha256(query).hexdigest()[:24] and hits[0]["score"] > 0.999

        compared = client.post(
            "/img/search/compare", data={"collections": ["rn", "vit"], "text": "红色的圆形", "top_k": 5}
        )
        assert compared.status_code == 200, compared.text
        body = compared.json()
        assert [(r["collection"], r["model"], len(r["hits"])) for r in body["results"]] == [
            ("rn", "RN50", 5),
            ("vit", "ViT-B-16", 5),
        ]
        rn_ids = {h["image_id"] for h in body["results"][0]["hits"]}
        vit_ids = {h["image_id"] for h in body["results"][1]["hits"]}
        overlap = body["overlap"][0]
        assert (overlap["a"], overlap["b"], overlap["common"]) == ("rn", "vit", len(rn_ids & vit_ids))

        by_image = client.post(
            "/img/search/compare",
            data={"collections": ["rn", "vit"], "top_k": 3},
            files={"file": ("q.jpg", resized_recompressed(originals[7]), "image/jpeg")},
        ).json()
        source = hashlib.sha256(originals[7]).hexdigest()[:24]
        assert [r["hits"][0]["image_id"] for r in by_image["results"]] == [source, source]
        assert by_image["overlap"][0]["common"] >= 1

        for bad in ({"collections": ["rn"], "text": "x"}, {"collections": ["rn", "vit"]}):
            assert client.post("/img/search/compare", data=bad).status_code == 422
        assert client.post("/img/search/compare", data={"collections": ["rn", "nope"], "text": "x"}).status_code == 404


def test_registry_keeps_at_most_the_configured_number_of_models(
    encoder, make_settings: Callable[..., Settings]
) -> None:
    from operations.errors import InvalidInput
    from operations.models.models import ModelRegistry

    registry = ModelRegistry(make_settings(max_loaded_models=1), shared=encoder)
    try:
        assert registry.get("RN50") is encoder
        vit = registry.get("ViT-B-16")
        assert [i.model for i in registry.loaded()] == ["ViT-B-16"]  # RN50 let go
        assert vit.encode_text(["还在"]).shape == (1, 512)  # the model in use keeps working
        assert registry.get("RN50") is encoder and [i.model for i in registry.loaded()] == ["RN50"]
        assert registry.get("ViT-B-16") is not vit  # loaded afresh after being let go
        with pytest.raises(InvalidInput, match="unknown model"):
            registry.get("RN51")
    finally:
        registry.close()
