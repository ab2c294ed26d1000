"""One suite, run against SQLite and the real MariaDB/MySQL: both backends must behave the same."""

from __future__ import annotations

import hashlib
import os

import pytest

from adapters.stores.sql.metadata_store import MetadataStore, NewImage


@pytest.fixture
def store(metadata_url: str):
    store = MetadataStore(metadata_url)
    yield store
    store.close()


def _image(image_id: str, size: int = 100) -> NewImage:
    data = os.urandom(size)
    return NewImage(image_id, data, "image/jpeg", 32, 24, hashlib.sha256(data).hexdigest())


def test_collection_create_is_idempotent_and_keeps_first_model(store: MetadataStore) -> None:
    first = store.create_collection("flickr", "RN50", 1024, "IP")
    again = store.create_collection("flickr", "ViT-B-16", 512, "IP")
    assert (again.model, again.dim) == ("RN50", 1024) == (first.model, first.dim)
    assert [c.name for c in store.list_collections()] == ["flickr"]
    assert store.get_collection("missing") is None


def test_rows_are_hidden_until_their_vector_is_marked_indexed(store: MetadataStore) -> None:
    store.create_collection("c", "RN50", 1024, "IP")
    ids = store.insert_pending("c", [_image("a"), _image("b")])
    assert sorted(ids) == ["a", "b"] and len(set(ids.values())) == 2
    assert store.count("c") == 0 and store.count("c", include_pending=True) == 2
    assert store.fetch("c", list(ids.values())) == {}
    assert store.get_image("c", "a") is None

    store.mark_indexed([ids["a"]])
    assert store.count("c") == 1
    fetched = store.fetch("c", list(ids.values()), with_data=True)
    assert list(fetched) == [ids["a"]] and fetched[ids["a"]].data is not None
    assert store.fetch("c", [ids["a"]])[ids["a"]].data is None  # bytes only on request
    found = store.lookup("c", ["a", "b", "zzz"])
    assert {k: (v.id, v.indexed, v.image_id) for k, v in found.items()} == {
        "a": (ids["a"], True, "a"),
        "b": (ids["b"], False, "b"),
    }


def test_insert_pending_again_returns_the_same_ids(store: MetadataStore) -> None:
    store.create_collection("c", "RN50", 1024, "IP")
    first = store.insert_pending("c", [_image("a"), _image("b")])
    second = store.insert_pending("c", [_image("b"), _image("c")])
    assert second["b"] == first["b"]
    assert store.count("c", include_pending=True) == 3


def test_same_image_id_in_two_collections_gets_two_rows(store: MetadataStore) -> None:
    store.create_collection("one", "RN50", 1024, "IP")
    store.create_collection("two", "RN50", 1024, "IP")
    a = store.insert_pending("one", [_image("x")])["x"]
    b = store.insert_pending("two", [_image("x")])["x"]
    assert a != b


def test_large_blob_and_unicode_ids_round_trip(store: MetadataStore) -> None:
    store.create_collection("c", "RN50", 1024, "IP")
    image = _image("图片-🖼-001", size=3 * 1024 * 1024)  # beyond BLOB's 64 KiB: needs MEDIUMBLOB on MySQL
    ids = store.insert_pending("c", [image])
    store.mark_indexed(list(ids.values()))
    record = store.get_image("c", "图片-🖼-001")
    assert record is not None and record.data == image.data and record.sha256 == image.sha256


def test_many_rows_in_chunks(store: MetadataStore) -> None:
    store.create_collection("c", "RN50", 1024, "IP")
    ids = store.insert_pending("c", [_image(f"img{i}", 10) for i in range(1234)])
    store.mark_indexed(list(ids.values()))
    assert store.count("c") == 1234
    assert len(store.fetch("c", list(ids.values()))) == 1234


def test_delete_collection_removes_rows_and_only_its_own(store: MetadataStore) -> None:
    for name in ("keep", "drop"):
        store.create_collection(name, "RN50", 1024, "IP")
        store.mark_indexed(list(store.insert_pending(name, [_image("a"), _image("b")]).values()))
    assert store.delete_collection("drop") == 2
    assert store.get_collection("drop") is None and store.count("drop", include_pending=True) == 0
    assert store.count("keep") == 2


def test_sha_lookup_pages_hide_and_delete(store: MetadataStore) -> None:
    store.create_collection("c", "RN50", 1024, "IP")
    images = [_image(f"i{n}", 20) for n in range(25)]
    ids = store.insert_pending("c", images)
    store.mark_indexed(list(ids.values()))
    by_sha = store.lookup_sha("c", [images[3].sha256, "0" * 64])
    assert list(by_sha) == [images[3].sha256] and by_sha[images[3].sha256].image_id == "i3"
    pages = list(store.iter_id_pages("c", page=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i, _ in p] == sorted(ids.values())

    store.mark_indexed([ids["i0"]], indexed=False)
    assert store.get_image("c", "i0") is None and store.get_image("c", "i0", include_pending=True) is not None
    assert store.count("c") == 24
    store.delete_rows([ids["i0"], ids["i1"]])
    assert store.existing_ids("c", [ids["i0"], ids["i1"], ids["i2"]]) == {ids["i2"]}
    assert store.count("c", include_pending=True) == 23
