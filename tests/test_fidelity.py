"""The source document's hand check, automated: on a 1,000-image Flickr30k-CN-format split, for every
query text the service's top-10 equals brute-force inner-product KNN over the same features, same order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from config import Settings
from operations.ingest.flickr_format import image_features_jsonl, iter_jsonl, texts_jsonl
from tests.conftest import load_split
from tests.ranking import same_ranking


@pytest.mark.slow
def test_top10_equals_brute_force_knn_for_every_text(
    mysql_url: str,
    milvus_target: dict[str, str],
    big_split: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
) -> None:
    features = list(iter_jsonl(image_features_jsonl(big_split, "test")))
    image_ids = [str(f["image_id"]) for f in features]
    matrix = np.asarray([f["feature"] for f in features], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    texts = list(iter_jsonl(texts_jsonl(big_split, "test")))
    assert len(image_ids) == 1000 and len(texts) >= 1000

    with make_client(make_settings(mysql_url, milvus_target)) as client:
        job = load_split(client, "flickr30k", "big", "test")
        assert (job["state"], job["loaded"]) == ("succeeded", 1000), job

        query_vectors = np.concatenate(
            [
                np.asarray(
                    client.post("/embed/text", json={"texts": [t["text"] for t in texts[i : i + 64]]}).json()[
                        "vectors"
                    ],
                    dtype=np.float32,
                )
                for i in range(0, len(texts), 64)
            ]
        )
        all_scores = query_vectors @ matrix.T
        mismatches = []
        for text, scores in zip(texts, all_scores, strict=True):
            order = np.argsort(-scores, kind="stable")[:10]
            expected = [image_ids[j] for j in order]
            response = client.post(
                "/img/search", json={"mode": "semantic", "collection": "flickr30k", "text": text["text"], "top_k": 10}
            )
            hits = response.json()["hits"]
            got = [h["image_id"] for h in hits]
            if not same_ranking(got, expected, scores[order]) or not np.allclose(
                [h["score"] for h in hits], scores[order], atol=1e-5
            ):
                mismatches.append((text["text_id"], got, expected))
        assert not mismatches, f"{len(mismatches)} of {len(texts)} queries differ, e.g. {mismatches[:2]}"
