"""The keyword index on both metadata backends: its results are exactly a brute-force substring scan of the same
fields (mixed Chinese and Latin, full-width characters, punctuation, single characters, numbers like 2号线),
updates are seen by the next search, and reciprocal-rank fusion matches a hand computation."""

from __future__ import annotations

import random
import unicodedata
from types import SimpleNamespace

import pytest

from adapters.stores.sql.metadata_store import MetadataStore, NewImage
from adapters.stores.sql.tag_store import Tag, TagStore
from adapters.stores.sql.text_store import TextStore
from operations.search import hybrid, keyword

ROWS = 2000
WORDS = [
    "发票",
    "增值税",
    "开具",
    "地铁",
    "2号线",
    "10号线",
    "时刻表",
    "北京",
    "上海",
    "南京路",
    "超市",
    "收据",
    "会议",
    "幻灯片",
    "聊天",
    "截图",
    "身份证",
    "正面",
    "Starbucks",
    "星巴克",
    "IMG_2043",
    "Ｗｉｆｉ",
    "ＡＢＣ",
    "１２３",
    "咖啡",
    "拿铁",
    "¥38.00",
    "（已付）",
    "【通知】",
    "公交",
    "站台",
    "营业时间",
    "9:00-21:00",
]
NOISE = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会"


def _phrase(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(2, 7)):
        if rng.random() < 0.55:
            parts.append(rng.choice(WORDS))
        else:
            parts.append("".join(rng.choice(NOISE) for _ in range(rng.randint(1, 4))))
    return rng.choice(["", " ", "，", "、", "\n"]).join(parts)


def _reference(fields: list[str], query: str) -> bool:
    """The documented rule, written independently: NFKC + lower case, split on whitespace; every query term is a
    substring of a whitespace-separated piece of one field."""
    terms = unicodedata.normalize("NFKC", query).lower().split()
    pieces = [p for f in fields for p in unicodedata.normalize("NFKC", f).lower().split()]
    return bool(terms) and all(any(t in p for p in pieces) for t in terms)


@pytest.fixture
def indexed(metadata_url):
    store = MetadataStore(metadata_url)
    store.create_collection("docs", "RN50", 4, "IP")
    store.create_collection("other", "RN50", 4, "IP")
    rng = random.Random(7)
    rows = [NewImage(f"img{i}", b"x", "image/jpeg", 1, 1, f"{i:064d}", f"IMG_{i:04d}.jpg") for i in range(ROWS)]
    ids = store.insert_pending("docs", rows)
    store.mark_indexed(list(ids.values()))
    other = store.insert_pending("other", [NewImage("o", b"x", "image/jpeg", 1, 1, "f" * 64, "o.jpg")])
    store.mark_indexed(list(other.values()))
    texts = TextStore(store.engine)
    fields = {}
    for row_id in ids.values():
        fields[row_id] = {"caption": _phrase(rng), "description": _phrase(rng) if rng.random() < 0.3 else None}
    texts.set_fields("docs", fields)
    texts.set_fields("other", {other["o"]: {"caption": "发票 地铁 2号线"}})
    yield SimpleNamespace(texts=texts, metadata=store, vectors=None), ids, fields
    store.close()


def _brute(fields: dict, names: dict, query: str) -> set[int]:
    found = set()
    for row_id, values in fields.items():
        texts = [values["caption"] or "", values["description"] or "", names[row_id]]
        if _reference(texts, query):
            found.add(row_id)
    return found


def test_keyword_results_equal_a_brute_force_substring_scan(indexed) -> None:
    services, ids, fields = indexed
    names = {row_id: f"IMG_{int(image_id[3:]):04d}.jpg" for image_id, row_id in ids.items()}
    rng = random.Random(3)
    queries = [
        "发票",
        "号线",
        "2号线",
        "0号线",
        "票",
        "税",
        "Starbucks",
        "starbucks",
        "bucks",
        "img_20",
        "img_2043",
        "IMG_0042.jpg",
        "wifi",
        "Ｗｉｆｉ",
        "abc",
        "ＡＢＣ",
        "123",
        "１２",
        "38.00",
        "¥38",
        "（已付）",
        "(已付)",
        "【通知】",
        "9:00-21",
        "发票 地铁",
        "增值税 ２号线",
        "不存在的词",
        "的",
        "，",
        "jpg",
        "咖啡拿铁",
    ]
    for _ in range(60):  # pieces of the stored texts themselves: 1 to 4 characters
        text = fields[rng.choice(list(fields))]["caption"]
        start = rng.randrange(len(text))
        queries.append(text[start : start + rng.randint(1, 4)])
    checked = 0
    for query in queries:
        if not query.split():
            continue
        expected = _brute(fields, names, query)
        got = {hit.id for hit in keyword.ranked(services, "docs", query)}
        assert got == expected, (query, sorted(got - expected)[:5], sorted(expected - got)[:5])
        checked += 1
    assert checked >= 80
    assert len(_brute(fields, names, "发票")) > 100  # the set is not trivially small or empty
    assert {hit.id for hit in keyword.ranked(services, "other", "2号线")} != set()  # collections stay apart


def test_updates_are_seen_by_the_next_search(indexed) -> None:
    services, ids, _ = indexed
    first = ids["img1"]
    assert first not in {h.id for h in keyword.ranked(services, "docs", "西湖断桥")}
    assert keyword.ranked(services, "docs", "西湖断桥", limit=10) == []  # its grams are now counted (as none)
    services.texts.set_fields("docs", {first: {"description": "2024年国庆 杭州西湖断桥"}})
    assert [h.id for h in keyword.ranked(services, "docs", "西湖断桥")] == [first]
    assert [h.id for h in keyword.ranked(services, "docs", "西湖断桥", limit=10)] == [first]  # counts only plan
    services.texts.set_fields("docs", {first: {"description": None}})
    assert keyword.ranked(services, "docs", "西湖断桥") == []
    TagStore(services.metadata.engine).replace("docs", "manual", {first: [Tag("毕业典礼", "manual")]})
    services.texts.refresh([first])
    assert [h.id for h in keyword.ranked(services, "docs", "毕业")] == [first]
    services.metadata.delete_rows([first])  # the index goes with the row
    assert keyword.ranked(services, "docs", "毕业") == []
    services.metadata.mark_indexed([ids["img2"]], indexed=False)  # a hidden (half-deleted) row is not found
    assert ids["img2"] not in {h.id for h in keyword.ranked(services, "docs", "img_0002")}


def test_ranking_prefers_descriptions_then_more_occurrences(indexed) -> None:
    services, ids, _ = indexed
    a, b, c = ids["img10"], ids["img11"], ids["img12"]
    services.texts.set_fields(
        "docs",
        {
            a: {"caption": "一只柴犬", "description": None},
            b: {"caption": "柴犬 柴犬 柴犬", "description": None},
            c: {"caption": None, "description": "我家的柴犬"},
        },
    )
    ranked = keyword.ranked(services, "docs", "柴犬")
    assert [h.id for h in ranked] == [c, b, a]
    assert [h.rank for h in ranked] == [1, 2, 3]


class _KeepEven:
    """A stand-in for the vector store's filter check (the real one is tested through the search route): keeps
    the even ids, so a filtered list must skip half of every stream it reads."""

    def existing_ids(self, _collection: str, ids: list[int], _expression: str) -> set[int]:
        return {i for i in ids if i % 2 == 0}


def test_the_best_few_read_from_the_top_of_the_index_equal_the_full_ranking(indexed) -> None:
    """The ranked read (the best ``limit`` without reading every match) against sorting every match: the same
    images, scores and order, for common words, long terms, several terms, ties and filters."""
    services, _, fields = indexed
    rng = random.Random(11)
    common = ["发票", "地铁", "号线", "咖啡", "营业时间", "增值税", "2号线", "img_", "jpg", "时刻表"]
    queries = [*common, "发票 地铁", "号线 咖啡 jpg", "增值税 营业时间", "发票 发票", "发票 发票票", "不存在的词 发票"]
    for _ in range(40):  # sentences and pieces of stored texts, 2 to 12 characters
        text = fields[rng.choice(list(fields))]["caption"].replace("\n", "")
        start = rng.randrange(max(1, len(text) - 2))
        queries.append(text[start : start + rng.randint(2, 12)])
    assert len(keyword.ranked(services, "docs", "发票")) > 4 * keyword.FIRST_READ  # several rounds of reads
    filtered = SimpleNamespace(texts=services.texts, vectors=_KeepEven())
    checked = 0
    for query in queries:
        terms = query.split()
        if not terms or min(len(t) for t in terms) < 2:
            continue
        full = keyword.ranked(services, "docs", query)
        full_even = keyword.ranked(filtered, "docs", query, "even")
        assert [h.id for h in full_even] == [h.id for h in full if h.id % 2 == 0]
        for limit in (1, 10, 100):
            top = keyword.ranked(services, "docs", query, limit=limit)
            assert [(h.id, h.score, h.rank) for h in top] == [(h.id, h.score, h.rank) for h in full[:limit]], query
            top_even = keyword.ranked(filtered, "docs", query, "even", limit)
            assert [(h.id, h.score) for h in top_even] == [(h.id, h.score) for h in full_even[:limit]], query
        checked += 1
    assert checked >= 45
    # It reads the top, not every match: a common word's ten best cost less than its entries.
    read: list[tuple[int, int]] = []

    def postings(*args, **kwargs):  # type: ignore[no-untyped-def]
        entries = services.texts.postings(*args, **kwargs)
        read.extend(entries)
        return entries

    counting = SimpleNamespace(postings=postings)
    for name in ("gram_counts", "holding", "documents", "candidates"):
        setattr(counting, name, getattr(services.texts, name))
    top = keyword.ranked(SimpleNamespace(texts=counting, vectors=None), "docs", "发票", limit=10)
    assert [h.id for h in top] == [h.id for h in keyword.ranked(services, "docs", "发票")][:10]
    assert 0 < len(read) < len(keyword.ranked(services, "docs", "发票")) / 2


def test_an_index_from_before_ranked_reads_is_weighted_on_start(metadata_url) -> None:
    """A metadata DB whose keyword index has no weights (as written before them) gains them from the stored
    documents when a service starts, and ranked reads are exact on it."""
    from sqlalchemy import text as sql

    store = MetadataStore(metadata_url)
    store.create_collection("old", "RN50", 4, "IP")
    rows = [NewImage(f"o{i}", b"x", "image/jpeg", 1, 1, f"{i:064d}") for i in range(300)]
    ids = store.insert_pending("old", rows)
    store.mark_indexed(list(ids.values()))
    texts = TextStore(store.engine)
    texts.set_fields("old", {row: {"caption": "发票 " * (row % 4 + 1) + "咖啡"} for row in ids.values()})
    with store.engine.begin() as conn:
        conn.execute(sql("DROP INDEX ix_text_grams_rank" + (" ON text_grams" if "mysql" in metadata_url else "")))
        conn.execute(sql("ALTER TABLE text_grams DROP COLUMN weight"))
    store.close()
    store = MetadataStore(metadata_url)
    try:
        services = SimpleNamespace(texts=TextStore(store.engine), vectors=None)
        full = keyword.ranked(services, "old", "发票 咖啡")
        assert len(full) == 300 and full[0].score > full[-1].score
        assert keyword.ranked(services, "old", "发票 咖啡", limit=20) == full[:20]
    finally:
        store.close()


def test_snippets_highlight_the_words_in_the_text_a_person_reads() -> None:
    from adapters.stores.sql.text_store import ImageTexts

    texts = ImageTexts(caption="乘坐地铁２号线到南京路", description=None, ocr="发票\n开具增值税发票 ¥38.00")
    snippets = {s.field: s for s in keyword.snippets(texts, "2号线 发票")}
    caption = snippets["caption"]
    assert caption.text == "乘坐地铁2号线到南京路"
    assert [caption.text[a:b] for a, b in caption.highlights] == ["2号线"]
    ocr = snippets["ocr"]
    assert [ocr.text[a:b] for a, b in ocr.highlights] == ["发票", "发票"]
    assert "\n" not in ocr.text


def test_reciprocal_rank_fusion_matches_a_hand_computation() -> None:
    semantic, lexical, k = [5, 1, 2, 3], [2, 4, 5], 60.0
    fused = hybrid.rrf([semantic, lexical], k)
    expected = {
        5: 1 / 61 + 1 / 63,
        2: 1 / 63 + 1 / 61,
        1: 1 / 62,
        4: 1 / 62,
        3: 1 / 64,
    }
    assert {i: pytest.approx(s) for i, s in expected.items()} == dict(fused)
    # 5 and 2 tie on score; 5 and 2 both have a best rank of 1: the lower id first. 1 and 4 tie: best rank 2 both.
    assert [i for i, _ in fused] == [2, 5, 1, 4, 3]
    assert hybrid.rrf([[7, 8]], 1.0) == [(7, 0.5), (8, pytest.approx(1 / 3))]
