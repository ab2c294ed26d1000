"""Moving a collection from the embedded stores (Milvus Lite + SQLite) to a real Milvus server + MySQL with
`imgsearch copy`, and `imgsearch export` as a backup that /img/load restores: after either, the counts, every
image's bytes and the top-10 of a set of queries (through the service on each side) are the same."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.stores.milvus.vector_store import MilvusVectorStore
from adapters.stores.sql.metadata_store import MetadataStore, NewImage
from app.cli import main
from app.main import create_app
from config import Settings
from operations.collections.copy_collection import Stores, copy_collection, open_stores
from operations.errors import Conflict, InvalidInput
from tests.conftest import load_split, wait_for_job
from tests.imagefiles import jpeg

COLLECTION = "photos"
QUERIES = ["红色的圆形", "黄色背景上有三个棕色的方块", "海边的日落", "一只小狗在草地上", "蓝色"]
ODD_IDS = ["007", "海边的日落", "a,b"]  # digits with a leading 0, non-ASCII, and a JSON-unfriendly comma


def _settings(metadata_url: str, milvus: dict[str, str], data_dir: Path, data_root: Path) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "data_root": data_root, "weights": "random"}
    return Settings(_env_file=None, metadata_url=metadata_url, **milvus, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def source(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path, small_split: Path, encoder: ChineseClipEncoder
) -> Settings:
    """The embedded stores, loaded once: the 60-image split, one image deleted (a hole in the ids), and three
    uploads with unusual external ids. Tests only read it."""
    base = tmp_path_factory.mktemp("copy-source")
    settings = _settings(f"sqlite:///{base / 'metadata.db'}", {"milvus_uri": str(base / "milvus.db")}, base, data_root)
    with TestClient(create_app(settings, encoder=encoder)) as client:
        job = load_split(client, COLLECTION, small_split.name, "valid")
        assert job["state"] == "succeeded" and job["loaded"] == 60, job
        victim = client.post("/img/search", json={"collection": COLLECTION, "text": "蓝色", "top_k": 1}).json()
        assert client.delete(f"/img/{COLLECTION}/{victim['hits'][0]['image_id']}").status_code == 200
        files = [("files", (f"{i}.jpg", jpeg(4000 + i), "image/jpeg")) for i in range(len(ODD_IDS))]
        response = client.post("/img/upload", data={"collection": COLLECTION, "image_ids": ODD_IDS}, files=files)
        assert response.json()["stored"] == len(ODD_IDS), response.text
        described = client.put(f"/img/{COLLECTION}/{ODD_IDS[0]}/description", json={"description": "备份里的说明"})
        assert described.status_code == 200, described.text
    return settings


def _rows(metadata_url: str, collection: str) -> dict[str, tuple[int, str]]:
    """image_id -> (id, sha256) of every searchable row, read from the store itself."""
    store = MetadataStore(metadata_url)
    try:
        return {
            r.image_id: (r.id, r.sha256) for page in store.iter_image_pages(collection, with_data=False) for r in page
        }
    finally:
        store.close()


def _vectors(settings: Settings, collection: str, ids: list[int]) -> tuple[int, dict[int, np.ndarray]]:
    """The vector count (read at Strong consistency) and the vectors of these ids."""
    store = MilvusVectorStore(str(settings.milvus_uri), db_name=settings.milvus_db)
    try:
        return store.count(collection), store.get(collection, ids)
    finally:
        store.close()


def _observe(client: TestClient, collection: str, image_ids: list[str]) -> dict[str, Any]:
    """What a user of the service sees: the collection, its count, every image's bytes, the top-10s."""
    info = {c["name"]: c for c in client.get("/collections").json()}[collection]
    tops = []
    for text in QUERIES:
        response = client.post("/img/search", json={"collection": collection, "text": text, "top_k": 10})
        assert response.status_code == 200, response.text
        tops.append([(h["id"], h["image_id"], h["score"]) for h in response.json()["hits"]])
    images, words = {}, {}
    for image_id in image_ids:
        response = client.get(f"/img/{collection}/{image_id}")
        assert response.status_code == 200, (image_id, response.text)
        images[image_id] = response.content
        text = client.get(f"/img/{collection}/{image_id}/text").json()
        words[image_id] = (text["caption"], text["description"], text["names"])
    return {
        "model": (info["model"], info["dim"]),
        "count": client.get("/img/count", params={"collection": collection}).json()["count"],
        "tops": tops,
        "images": images,
        "words": words,
    }


def _same_results(ours: list, theirs: list, same_ids: bool = True) -> None:
    for mine, other in zip(ours, theirs, strict=True):
        assert [h[1] for h in mine] == [h[1] for h in other]  # same images, same order
        if same_ids:
            assert [h[0] for h in mine] == [h[0] for h in other]
        assert np.allclose([h[2] for h in mine], [h[2] for h in other], atol=1e-4)


@pytest.fixture
def cli_source(source: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI reads its source from the environment, as a user's shell gives it."""
    monkeypatch.setenv("IMGSEARCH_DATA_DIR", str(source.data_dir))
    monkeypatch.setenv("IMGSEARCH_METADATA_URL", str(source.metadata_url))
    monkeypatch.setenv("IMGSEARCH_MILVUS_URI", str(source.milvus_uri))
    monkeypatch.setenv("IMGSEARCH_WEIGHTS", "random")
    monkeypatch.setenv("IMGSEARCH_LOG_LEVEL", "WARNING")
    return source


def test_copy_to_a_milvus_server_and_mysql_keeps_bytes_ids_vectors_and_results(
    cli_source: Settings,
    mysql_url: str,
    milvus_server_db: dict[str, str],
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source_rows = _rows(str(cli_source.metadata_url), COLLECTION)
    assert len(source_rows) == 62
    with make_client(cli_source) as client:
        before = _observe(client, COLLECTION, sorted(source_rows))

    command = ["copy", "--collection", COLLECTION, "--to-metadata", mysql_url]
    command += ["--to-milvus", milvus_server_db["milvus_uri"], "--to-milvus-db", milvus_server_db["milvus_db"]]
    assert main(command) == 0
    out = capsys.readouterr()
    assert "62 copied, 0 completed, 0 already there, 0 with new ids" in out.out
    assert "holds 62 rows and 62 vectors" in out.out
    assert "img/s" in out.err  # the tqdm bar

    destination = make_settings(mysql_url, milvus=milvus_server_db)
    assert _rows(mysql_url, COLLECTION) == source_rows  # same ids, same external ids, same content hashes
    ids = [row_id for row_id, _ in source_rows.values()]
    source_count, source_vectors = _vectors(cli_source, COLLECTION, ids)
    count, vectors = _vectors(destination, COLLECTION, ids)
    assert source_count == count == 62
    assert all(np.array_equal(vectors[i], source_vectors[i]) for i in ids)  # copied, not re-encoded
    with make_client(destination) as client:
        after = _observe(client, COLLECTION, sorted(source_rows))
    assert after["model"] == before["model"] == ("RN50", 1024)
    assert after["count"] == before["count"] == 62
    assert after["images"] == before["images"]
    assert after["words"] == before["words"]  # captions, the description, file names
    assert sum(1 for caption, _, _ in before["words"].values() if caption) == 59
    _same_results(after["tops"], before["tops"])
    store = MilvusVectorStore(milvus_server_db["milvus_uri"], db_name=milvus_server_db["milvus_db"])
    try:
        assert store.index_info(COLLECTION).index_type == "HNSW"  # the destination's default, not the source's
    finally:
        store.close()

    assert main(command) == 0  # again: nothing to add
    assert "0 copied, 0 completed, 62 already there" in capsys.readouterr().out
    assert _rows(mysql_url, COLLECTION) == source_rows
    assert _vectors(destination, COLLECTION, [])[0] == 62


class _FailingVectors:
    """The destination Milvus failing on the second batch's upsert, as a lost connection would."""

    def __init__(self, real: MilvusVectorStore) -> None:
        self.real, self.calls = real, 0

    def upsert(self, name: str, ids: list[int], vectors: np.ndarray, fields: list | None = None) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("Milvus went away")
        self.real.upsert(name, ids, vectors, fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def stores(source: Settings) -> Iterator[Callable[..., Stores]]:
    opened: list[Stores] = []

    def open_(metadata_url: str, milvus: dict[str, str]) -> Stores:
        opened.append(open_stores(metadata_url, milvus["milvus_uri"], milvus.get("milvus_db", "default")))
        return opened[-1]

    yield open_
    for pair in reversed(opened):
        pair.close()


def test_an_interrupted_copy_is_completed_and_taken_ids_are_replaced(
    source: Settings, mysql_url: str, milvus_server_db: dict[str, str], stores: Callable[..., Stores]
) -> None:
    source_rows = _rows(str(source.metadata_url), COLLECTION)
    src = stores(str(source.metadata_url), {"milvus_uri": str(source.milvus_uri)})
    dst = stores(mysql_url, milvus_server_db)
    # Another collection in the destination already holds ids 1..10, which the source's rows also have.
    dst.metadata.create_collection("other", "RN50", 1024, "IP")
    taken = dst.metadata.insert_pending(
        "other", [NewImage(f"x{i}", b"x", "image/jpeg", 1, 1, f"{i:064x}") for i in range(10)]
    )
    assert sorted(taken.values()) == list(range(1, 11))

    failing = Stores(dst.metadata, _FailingVectors(dst.vectors), dst.metadata_url, dst.milvus_uri, dst.milvus_db)
    with pytest.raises(ConnectionError):
        copy_collection(src, failing, COLLECTION, batch_size=20)
    # Of the first page, rows 11-20 were written and 1-10 left for the end (their ids are taken); the second
    # page's rows are pending: only rows whose vectors were written are searchable.
    assert dst.metadata.count(COLLECTION) == 10
    assert dst.metadata.count(COLLECTION, include_pending=True) == 30

    report = copy_collection(src, dst, COLLECTION, batch_size=20)
    assert (report.copied, report.completed, report.present, report.new_ids) == (32, 20, 10, 10)
    again = copy_collection(src, dst, COLLECTION, batch_size=20)  # and once more: nothing
    assert (again.copied, again.completed, again.present) == (0, 0, 62)
    assert dst.metadata.count(COLLECTION) == dst.vectors.count(COLLECTION) == 62
    assert dst.metadata.count(COLLECTION, include_pending=True) == 62

    copied = _rows(mysql_url, COLLECTION)
    assert {k: sha for k, (_, sha) in copied.items()} == {k: sha for k, (_, sha) in source_rows.items()}
    moved = {source_rows[k][0] for k in copied if copied[k][0] != source_rows[k][0]}
    assert moved == {row_id for row_id, _ in source_rows.values() if row_id <= 10}  # exactly the taken ones
    assert all(copied[k][0] > 63 for k in copied if source_rows[k][0] in moved)
    vectors = dst.vectors.get(COLLECTION, [row_id for row_id, _ in copied.values()])
    source_vectors = src.vectors.get(COLLECTION, [row_id for row_id, _ in source_rows.values()])
    assert all(np.array_equal(vectors[copied[k][0]], source_vectors[source_rows[k][0]]) for k in copied)


def test_copy_refuses_another_model_and_the_source_itself(
    source: Settings, tmp_path: Path, stores: Callable[..., Stores], capsys: pytest.CaptureFixture[str]
) -> None:
    src = stores(str(source.metadata_url), {"milvus_uri": str(source.milvus_uri)})
    dst = stores(f"sqlite:///{tmp_path / 'dst.db'}", {"milvus_uri": str(tmp_path / "dst_milvus.db")})
    dst.metadata.create_collection(COLLECTION, "ViT-B-16", 512, "IP")
    with pytest.raises(Conflict, match="ViT-B-16"):
        copy_collection(src, dst, COLLECTION)
    assert not dst.vectors.has_collection(COLLECTION) and dst.metadata.count(COLLECTION, include_pending=True) == 0
    same_db = Stores(src.metadata, dst.vectors, src.metadata_url, dst.milvus_uri)
    with pytest.raises(InvalidInput, match="is the source's"):
        copy_collection(src, same_db, COLLECTION)

    dst.metadata.delete_collection(COLLECTION)  # with the obstacle gone, the same copy into Lite + SQLite works
    report = copy_collection(src, dst, COLLECTION, batch_size=25)
    assert (report.copied, report.new_ids, report.destination_rows, report.destination_vectors) == (62, 0, 62, 62)
    assert _rows(dst.metadata_url, COLLECTION) == _rows(src.metadata_url, COLLECTION)


def test_export_is_a_backup_that_load_restores(
    cli_source: Settings,
    data_root: Path,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], TestClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source_rows = _rows(str(cli_source.metadata_url), COLLECTION)
    with make_client(cli_source) as client:
        before = _observe(client, COLLECTION, sorted(source_rows))

    folder = f"backup_{uuid.uuid4().hex[:8]}"
    assert main(["export", "--collection", COLLECTION, str(data_root / folder), "--split", "bak"]) == 0
    out = capsys.readouterr()
    assert "exported 62 images of photos (RN50, 1024-d)" in out.out
    assert "cannot key" not in out.out and "image id(s)" not in out.out  # every id restores from the features
    assert "--model RN50" in out.out and "img/s" in out.err
    files = sorted(p.name for p in (data_root / folder).iterdir())
    # No temporary files left; the captions in the Flickr30k-CN texts file, the description beside it.
    assert files == ["bak_export.json", "bak_imgs.img_feat.jsonl", "bak_imgs.tsv", "bak_texts.jsonl", "bak_words.jsonl"]
    manifest = json.loads((data_root / folder / "bak_export.json").read_text())
    assert {k: manifest[k] for k in ("collection", "model", "dim", "count")} == {
        "collection": COLLECTION,
        "model": "RN50",
        "dim": 1024,
        "count": 62,
    }

    restored = make_settings(
        f"sqlite:///{tmp_path / 'restored.db'}", milvus={"milvus_uri": str(tmp_path / "restored_milvus.db")}
    )
    with make_client(restored) as client:
        response = client.post("/img/load", json={"collection": "back", "path": folder, "split": "bak"})
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 62, job
        after = _observe(client, "back", sorted(source_rows))
    assert after["model"] == before["model"] and after["count"] == before["count"] == 62
    assert after["images"] == before["images"]  # the bytes exactly as stored
    assert {k: v[:2] for k, v in after["words"].items()} == {k: v[:2] for k, v in before["words"].items()}
    _same_results(after["tops"], before["tops"], same_ids=False)  # a load numbers the rows afresh

    restored_rows = _rows(str(restored.metadata_url), "back")
    keyed = list(source_rows)
    _, restored_vectors = _vectors(restored, "back", [restored_rows[k][0] for k in keyed])
    _, source_vectors = _vectors(cli_source, COLLECTION, [source_rows[k][0] for k in keyed])
    for k in keyed:  # from the feature file, not re-encoded: equal to the stored vectors to its 7 decimals
        assert np.allclose(restored_vectors[restored_rows[k][0]], source_vectors[source_rows[k][0]], atol=1e-6)
