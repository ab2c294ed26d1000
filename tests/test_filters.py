"""Filtered and paged search (people filters too): with a FLAT index the filtered top-k equals brute force over the
filtered subset, in order, on Milvus Lite and on a Milvus server; collections of the previous schema are upgraded
at start-up."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pymilvus import DataType, MilvusClient

from adapters.encoders.clip_encoder import ChineseClipEncoder
from adapters.stores.sql.face_store import FaceBox
from tests.imagefiles import encode, jpeg, photo

TEXT = "红色的圆形"


def _files(start: int, count: int, fmt: str = "JPEG", size: tuple[int, int] = (320, 240)) -> list:
    ext = "png" if fmt == "PNG" else "jpg"
    return [("files", (f"{i}.{ext}", encode(photo(i, size), fmt), "x")) for i in range(start, start + count)]


@pytest.fixture
def gallery(milvus_target, make_settings, make_client, data_root, tmp_path):
    """48 images: JPEG uploads at two sizes, PNG uploads, and an ingested folder; tags on some by hand."""
    settings = make_settings(milvus=milvus_target, backend="torch", index_type="FLAT", index_params={})
    with make_client(settings) as client:
        for files in (_files(0, 16), _files(16, 8, size=(640, 480)), _files(24, 8, "PNG")):
            assert client.post("/img/upload", data={"collection": "f"}, files=files).json()["stored"] == len(files)
        folder = data_root / f"trip_{tmp_path.name[-12:]}"
        folder.mkdir()
        for i in range(32, 48):
            (folder / f"{i}.jpg").write_bytes(jpeg(i + 5000))
        job = client.post("/img/ingest", json={"collection": "f", "path": folder.name}).json()
        from tests.conftest import wait_for_job

        assert wait_for_job(client, job["job_id"])["loaded"] == 16
        services = client.app.state.services
        rows = {}
        for page in services.metadata.iter_image_pages("f"):
            rows.update({r.id: r for r in page})
        ids = sorted(rows)
        for n, vector_id in enumerate(ids):
            tags = ["海边"] if n % 3 == 0 else []
            tags += ["家人"] if n % 4 == 0 else []
            assert client.put(f"/img/f/{rows[vector_id].image_id}/tags", json={"tags": tags}).status_code == 200
        yield client, rows, folder.name


def _expected(client: TestClient, encoder: ChineseClipEncoder, keep, top_k: int = 10, offset: int = 0) -> list[int]:
    services = client.app.state.services
    stored = services.vectors.get("f", [i for page in services.metadata.iter_id_pages("f") for i, _ in page])
    query = encoder.encode_text([TEXT])[0]
    ranked = sorted((i for i in stored if keep(i)), key=lambda i: -float(stored[i] @ query))
    return ranked[offset : offset + top_k]


def _search(client: TestClient, **body: object) -> dict:
    response = client.post(
        "/img/search", json={"mode": "semantic", "collection": "f", "text": TEXT, "top_k": 10, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_filtered_top_k_equals_brute_force_over_the_filtered_set(gallery, encoder: ChineseClipEncoder) -> None:
    client, rows, folder = gallery
    ids = sorted(rows)
    beach = {i for n, i in enumerate(ids) if n % 3 == 0}
    family = {i for n, i in enumerate(ids) if n % 4 == 0}
    cases = [
        ({"tags_any": ["海边"]}, lambda i: i in beach),
        ({"tags_any": ["海边", "家人"]}, lambda i: i in beach | family),
        ({"tags_all": ["海边", "家人"]}, lambda i: i in beach & family),
        ({"mime": ["image/png"]}, lambda i: rows[i].mime == "image/png"),
        ({"min_width": 600}, lambda i: rows[i].width >= 600),
        ({"source": [f"ingest:{folder}"]}, lambda i: i >= ids[32]),
        ({"source": ["upload"], "tags_any": ["海边"], "min_height": 240}, lambda i: i < ids[32] and i in beach),
    ]
    for filters, keep in cases:
        body = _search(client, filters=filters)
        assert [hit["id"] for hit in body["hits"]] == _expected(client, encoder, keep), filters
        assert body["filter"]
    tagged = _search(client, filters={"tags_all": ["海边", "家人"]})["hits"]
    assert tagged and all({"海边", "家人"} <= set(hit["tags"]) for hit in tagged)
    now = dt.datetime.now(dt.UTC)
    assert _search(client, filters={"added_after": (now + dt.timedelta(hours=1)).isoformat()})["hits"] == []
    past = _search(client, filters={"added_after": (now - dt.timedelta(hours=1)).isoformat()})
    assert [h["id"] for h in past["hits"]] == [h["id"] for h in _search(client)["hits"]]
    _people_filters_are_exact(client, rows, encoder)  # on the same gallery: one less to build


def test_pages_follow_each_other_with_and_without_filters(gallery, encoder: ChineseClipEncoder) -> None:
    client, rows, _ = gallery
    first, second = _search(client), _search(client, offset=10)
    assert [h["id"] for h in second["hits"]] == _expected(client, encoder, lambda i: True, offset=10)
    assert not {h["id"] for h in first["hits"]} & {h["id"] for h in second["hits"]} and second["offset"] == 10
    beach = {i for n, i in enumerate(sorted(rows)) if n % 3 == 0}  # 16 images: the last page holds 6
    last = _search(client, filters={"tags_any": ["海边"]}, offset=10)
    assert [h["id"] for h in last["hits"]] == _expected(client, encoder, lambda i: i in beach, offset=10)
    assert len(last["hits"]) == 6
    image_id = rows[sorted(rows)[0]].image_id
    more = client.get(f"/img/f/{image_id}/similar", params={"top_k": 5, "offset": 5}).json()["hits"]
    whole = client.get(f"/img/f/{image_id}/similar", params={"top_k": 10}).json()["hits"]
    assert [h["id"] for h in more] == [h["id"] for h in whole[5:]]
    form = client.post(
        "/img/search/image",
        data={"collection": "f", "top_k": 5, "filters": '{"mime": ["image/png"]}'},
        files=[("files", ("q.jpg", jpeg(1), "x"))],
    ).json()["results"][0]["hits"]
    assert len(form) == 5 and all(h["mime"] == "image/png" for h in form)


def _people(client: TestClient, rows: dict) -> tuple[dict[str, int], dict[str, set[int]]]:
    """Faces written straight into the face store (no detector): 妈妈 in every 3rd image, 爸爸 in every 4th, a
    stranger in every 5th; 妈妈 named."""
    services = client.app.state.services
    ids = sorted(rows)
    members = {
        "mama": {i for n, i in enumerate(ids) if n % 3 == 0},
        "papa": {i for n, i in enumerate(ids) if n % 4 == 0},
        "stranger": {i for n, i in enumerate(ids) if n % 5 == 0},
    }
    store = services.face_store
    persons = dict(zip(members, store.create_persons("f", 3), strict=True))
    boxes = {i: [FaceBox(10 * k, 10, 8, 8, 1.0) for k, who in enumerate(members) if i in members[who]] for i in ids}
    new, _ = store.replace("f", "test", boxes)
    placed = {}
    for image, faces in new.items():
        for face, who in zip(faces, [who for who in members if image in members[who]], strict=True):
            placed[face] = persons[who]
    store.assign(placed)
    store.update_person(persons["mama"], name="妈妈")
    return persons, members


def _people_filters_are_exact(client: TestClient, rows: dict, encoder: ChineseClipEncoder) -> None:
    """people: all of them in the photo; people_any: at least one; a named person in the text becomes the filter
    and leaves the text; exact under paging, on Lite and the server alike."""
    persons, members = _people(client, rows)
    mama, papa = members["mama"], members["papa"]
    cases = [
        ({"people": [persons["mama"]]}, lambda i: i in mama),
        ({"people": [persons["mama"], persons["papa"]]}, lambda i: i in mama & papa),
        ({"people_any": [persons["papa"], persons["stranger"]]}, lambda i: i in papa | members["stranger"]),
        ({"people": [persons["papa"]], "tags_any": ["家人"]}, lambda i: i in papa),  # 家人: every 4th too
    ]
    for filters, keep in cases:
        for offset in (0, 5):
            hits = _search(client, filters=filters, offset=offset)["hits"]
            assert [h["id"] for h in hits] == _expected(client, encoder, keep, offset=offset), filters
    named = client.post(
        "/img/search", json={"mode": "semantic", "collection": "f", "text": f"妈妈{TEXT}", "top_k": 10}
    ).json()
    assert named["query"]["people"] == [{"id": persons["mama"], "name": "妈妈"}]
    assert named["query"]["parts"][0]["text"] == TEXT  # the name left the text
    assert [h["id"] for h in named["hits"]] == _expected(client, encoder, lambda i: i in mama)
    for bad, message in (([999999], "no person 999999"), (["x"], "")):
        response = client.post("/img/search", json={"collection": "f", "text": TEXT, "filters": {"people": bad}})
        assert response.status_code == 422 and message in response.json()["error"]["message"], response.text


BAD = [
    ({"filters": {"tags_any": ["没有的标签"]}}, "has the tag(s) 没有的标签"),
    ({"filters": {"added_after": "2026-02-01T00:00:00Z", "added_before": "2026-01-01T00:00:00Z"}}, "later than"),
    ({"offset": 48}, "past the end"),
    ({"offset": 5000}, "IMGSEARCH_MAX_OFFSET"),
    ({"offset": -1}, "offset must be between"),
    ({"filters": {"min_width": -5}}, "min_width must be"),
    ({"filters": {"mime": [""]}}, "non-empty strings"),
]


def test_bad_filters_and_offsets_are_refused(gallery) -> None:
    client, _, _ = gallery
    for body, message in BAD:
        response = client.post("/img/search", json={"mode": "semantic", "collection": "f", "text": TEXT, **body})
        assert response.status_code == 422 and message in response.json()["error"]["message"], response.text
    response = client.post("/img/search/combined", data={"collection": "f", "text": TEXT, "filters": "{not json"})
    assert response.status_code == 422 and "not a valid filter object" in response.json()["error"]["message"]


def _downgrade(uri: str, db_name: str, name: str) -> None:
    """The collection as the previous release made it: id and vector only."""
    client = MilvusClient(uri=uri, db_name=db_name) if uri.startswith("http") else MilvusClient(uri=uri)
    try:
        client.load_collection(name)
        ids = [row["id"] for row in client.query(name, filter="id >= 0", output_fields=["id"], limit=16384)]
        vectors = {}
        for start in range(0, len(ids), 100):
            for row in client.get(name, ids=ids[start : start + 100], output_fields=["vector"]):
                vectors[row["id"]] = row["vector"]
        dim = len(next(iter(vectors.values())))
        client.drop_collection(name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=index)
        client.insert(name, [{"id": i, "vector": v} for i, v in vectors.items()])
        client.flush(name)
    finally:
        client.close()


def test_a_collection_of_the_previous_schema_is_upgraded_at_start_up(
    milvus_target, make_settings, make_client, encoder: ChineseClipEncoder
) -> None:
    settings = make_settings(milvus=milvus_target, backend="torch", index_type="FLAT", index_params={})
    with make_client(settings) as client:
        stored = client.post("/img/upload", data={"collection": "old"}, files=_files(0, 12) + _files(12, 4, "PNG"))
        ids = [r["image_id"] for r in stored.json()["results"]]
        client.put(f"/img/old/{ids[0]}/tags", json={"tags": ["旧标签"]})
        before = client.post(
            "/img/search", json={"mode": "semantic", "collection": "old", "text": TEXT, "top_k": 16}
        ).json()["hits"]
    uri, db_name = str(settings.milvus_uri), settings.milvus_db
    _downgrade(uri, db_name, "old")
    with make_client(settings) as client:  # the start-up upgrades it
        services = client.app.state.services
        assert services.vectors.has_scalar_fields("old") and not services.vectors.has_collection("old__upgrade")
        after = client.post(
            "/img/search", json={"mode": "semantic", "collection": "old", "text": TEXT, "top_k": 16}
        ).json()["hits"]
        assert [h["id"] for h in after] == [h["id"] for h in before]
        assert np.allclose([h["score"] for h in after], [h["score"] for h in before], atol=1e-5)
        png = _search_in(client, "old", {"mime": ["image/png"]})
        assert len(png) == 4 and all(h["mime"] == "image/png" for h in png)
        assert [h["image_id"] for h in _search_in(client, "old", {"tags_any": ["旧标签"]})] == [ids[0]]
        assert client.get("/img/count", params={"collection": "old"}).json()["count"] == 16

    # a start that stopped after dropping the old collection: the next start writes the copy back
    with make_client(settings) as client:
        vectors = client.app.state.services.vectors
        vectors.ensure_collection("old__upgrade", 1024)
        found = vectors.get("old", [h["id"] for h in before])
        vectors.upsert("old__upgrade", list(found), np.stack(list(found.values())))
        vectors.drop_collection("old")
    with make_client(settings) as client:
        assert client.get("/img/count", params={"collection": "old"}).json()["count"] == 16
        assert len(_search_in(client, "old", {"mime": ["image/png"]})) == 4
        assert not client.app.state.services.vectors.has_collection("old__upgrade")


def _search_in(client: TestClient, collection: str, filters: dict) -> list[dict]:
    body = {"collection": collection, "text": TEXT, "top_k": 16, "filters": filters}
    response = client.post("/img/search", json=body)
    assert response.status_code == 200, response.text
    return response.json()["hits"]
