"""Words about pictures through the API: a load keeps its Flickr30k-CN captions, descriptions set by hand, keyword /
semantic / hybrid search with snippets and ranks, relevance cutoffs, and bad input answered 422."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_split


@pytest.fixture
def client(metadata_url, small_split, make_settings, make_client):
    with make_client(make_settings(metadata_url)) as client:
        assert load_split(client, "flickr", "small", "valid")["state"] == "succeeded"
        yield client


def _captions(split: Path) -> dict[str, str]:
    captions: dict[str, list[str]] = {}
    for line in (split / "valid_texts.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        for image_id in record["image_ids"]:
            captions.setdefault(str(image_id), []).append(record["text"])
    return {k: "\n".join(v) for k, v in captions.items()}


def _search(client, **body):
    response = client.post("/img/search", json={"collection": "flickr", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_load_keeps_its_captions_and_keyword_search_finds_their_words(client, small_split) -> None:
    captions = _captions(small_split)
    some_id, caption = next(iter(captions.items()))
    text = client.get(f"/img/flickr/{some_id}/text").json()
    assert text["caption"] == caption
    hits = _search(client, text="圆形", mode="semantic", top_k=60)["hits"]  # every hit carries its words
    assert {h["image_id"]: h["caption"] for h in hits} == {h["image_id"]: captions[h["image_id"]] for h in hits}
    word = "三角形"
    expected = {i for i, c in captions.items() if word in c}
    assert 0 < len(expected) < len(captions)
    body = _search(client, text=word, mode="keyword", top_k=100)
    assert body["mode"] == "keyword"
    assert {hit["image_id"] for hit in body["hits"]} == expected
    for hit in body["hits"]:
        snippet = hit["match"]["snippets"][0]
        assert snippet["field"] == "caption"
        assert next(snippet["text"][a:b] for a, b in snippet["highlights"]) == word
        assert hit["match"]["keyword_rank"] >= 1 and hit["match"]["semantic_rank"] is None
    page = _search(client, text=word, mode="keyword", top_k=3, offset=3)
    assert [h["image_id"] for h in page["hits"]] == [h["image_id"] for h in body["hits"][3:6]]


def test_hybrid_says_why_each_hit_matched(client, small_split) -> None:
    body = _search(client, text="圆形", top_k=20, mode="hybrid")
    assert body["mode"] == "hybrid"
    semantic = _search(client, text="圆形", top_k=100, mode="semantic")
    keyword = _search(client, text="圆形", top_k=100, mode="keyword")
    semantic_ranks = {h["id"]: r for r, h in enumerate(semantic["hits"], start=1)}
    keyword_ranks = {h["id"]: r for r, h in enumerate(keyword["hits"], start=1)}
    fused = {
        i: sum(1 / (60 + ranks[i]) for ranks in (semantic_ranks, keyword_ranks) if i in ranks)
        for i in semantic_ranks.keys() | keyword_ranks.keys()
    }
    expected = sorted(fused, key=lambda i: (-fused[i], min(semantic_ranks.get(i, 999), keyword_ranks.get(i, 999)), i))
    assert [h["id"] for h in body["hits"]] == expected[:20]
    for hit in body["hits"]:
        match = hit["match"]
        assert match["semantic_rank"] == semantic_ranks.get(hit["id"])
        assert match["keyword_rank"] == keyword_ranks.get(hit["id"])
        assert match["fused_score"] == pytest.approx(fused[hit["id"]], abs=1e-6)
        assert hit["score"] == pytest.approx(semantic["hits"][semantic_ranks[hit["id"]] - 1]["score"], abs=1e-5)
        assert bool(match["snippets"]) == (hit["id"] in keyword_ranks)
    assert any(h["match"]["keyword_rank"] and h["match"]["semantic_rank"] for h in body["hits"])
    # Filters apply to both lists; a stored image can join the text (combined query) in hybrid mode.
    some = body["hits"][0]["image_id"]
    combined = _search(client, text="圆形", image_id=some, top_k=5, mode="hybrid")
    assert combined["mode"] == "hybrid" and combined["query"]["combined"]
    image_only = _search(
        client, text="圆形", text_weight=0, image_id=some, top_k=5, mode="hybrid"
    )  # the text's words still count
    assert image_only["mode"] == "hybrid" and any(h["match"]["keyword_rank"] for h in image_only["hits"])
    sentence = " ".join(
        f"红色{i}" for i in range(20)
    )  # more words than keyword search takes: searched by Chinese-CLIP alone
    long = _search(client, text=sentence, top_k=5, mode="hybrid")
    assert long["mode"] == "hybrid" and all(h["match"]["keyword_rank"] is None for h in long["hits"])


def test_a_description_set_by_hand_is_found_at_once(client, small_split) -> None:
    image_id = next(iter(_captions(small_split)))
    assert _search(client, text="外婆家的院子", mode="keyword")["hits"] == []
    response = client.put(f"/img/flickr/{image_id}/description", json={"description": "外婆家的院子 2019年夏天"})
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "外婆家的院子 2019年夏天"
    hits = _search(client, text="外婆家", mode="keyword")["hits"]
    assert [h["image_id"] for h in hits] == [image_id]
    assert hits[0]["match"]["snippets"][0]["field"] == "description"
    assert _search(client, text="外婆家", mode="hybrid")["hits"][0]["image_id"] == image_id  # hybrid puts it first
    client.put(f"/img/flickr/{image_id}/description", json={"description": ""})
    assert _search(client, text="外婆家", mode="keyword")["hits"] == []
    client.delete(f"/img/flickr/{image_id}")
    assert client.get(f"/img/flickr/{image_id}/text").status_code == 404


def test_relevance_cutoffs_drop_weak_hits_and_count_them(client) -> None:
    full = _search(client, text="蓝色的正方形", mode="semantic", top_k=30)
    scores = [h["score"] for h in full["hits"]]
    best = scores[0]
    cut = _search(client, text="蓝色的正方形", mode="semantic", top_k=30, relative_cutoff=0.99)
    assert [h["score"] for h in cut["hits"]] == [s for s in scores if s >= 0.99 * best]
    assert cut["cut_by_relative_cutoff"] == sum(1 for s in scores if s < 0.99 * best) > 0
    later = _search(client, text="蓝色的正方形", mode="semantic", top_k=10, offset=10, relative_cutoff=0.99)
    assert later["cut_by_relative_cutoff"] == sum(1 for s in scores[10:20] if s < 0.99 * best)  # the best of all
    threshold = scores[5]
    hybrid = _search(client, text="正方形", top_k=30, min_score=threshold, mode="hybrid")
    assert hybrid["mode"] == "hybrid"
    assert all(h["score"] >= threshold for h in hybrid["hits"])
    assert hybrid["cut_by_min_score"] + len(hybrid["hits"]) == 30


BAD = [
    ({"text": "猫", "mode": "fuzzy"}, "mode"),
    ({"text": "猫", "mode": "keyword", "min_score": 0.2}, "min_score"),
    ({"text": "猫", "mode": "keyword", "image_id": "x"}, "keyword"),
    ({"image_id": "x", "mode": "keyword"}, "give a text"),
    ({"text": "猫", "relative_cutoff": 0}, "relative_cutoff"),
    ({"text": "猫", "relative_cutoff": 1.5}, "relative_cutoff"),
    ({"text": "   ", "mode": "keyword"}, "empty"),
]


def test_bad_input_is_a_clear_4xx_and_changes_nothing(client, small_split) -> None:
    for body, message in BAD:
        response = client.post("/img/search", json={"collection": "flickr", **body})
        assert response.status_code == 422, (body, response.text)
        assert message in json.dumps(response.json(), ensure_ascii=False), (body, response.text)
    image_id = next(iter(_captions(small_split)))
    assert client.put(f"/img/flickr/{image_id}/description", json={"description": "字" * 5000}).status_code == 422
    assert client.put("/img/flickr/nope/description", json={"description": "x"}).status_code == 404
    assert client.get(f"/img/flickr/{image_id}/text").json()["description"] is None
