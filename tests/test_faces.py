"""People: dlib's real detector and embedding on real face photos (tests/data/faces), the clustering rules, the face
store on SQLite and MariaDB, and the whole flow through the API: faces read at upload, persons formed, named,
corrected, merged, split, searched by name, and gone with their images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from adapters import faces
from adapters.stores.sql.face_store import FaceBox, FaceStore
from adapters.stores.sql.metadata_store import MetadataStore, NewImage
from operations.people.clustering import Face, cluster
from tests import facefiles
from tests.conftest import wait_for_job

C = "family"


@pytest.fixture(scope="module")
def model() -> faces.DlibFaces:
    found = faces.DlibFaces()
    found.load()
    return found


def test_real_faces_are_found_and_one_person_is_closer_than_two(model: faces.DlibFaces) -> None:
    found = {name: model.find(facefiles.photo(name)) for name in ("obama.jpg", "obama2.jpg", "biden.jpg")}
    assert {name: len(f) for name, f in found.items()} == {"obama.jpg": 1, "obama2.jpg": 1, "biden.jpg": 1}
    group = model.find(facefiles.photo(facefiles.GROUP))
    assert len(group) == facefiles.GROUP_FACES
    width, height = facefiles.photo(facefiles.GROUP).size
    for face in group:
        x, y, w, h = face.box
        assert 0 <= x < x + w <= width and 0 <= y < y + h <= height and 60 <= w <= 200
        assert np.linalg.norm(face.vector) == pytest.approx(1.0, abs=1e-5) and face.vector.shape == (faces.DIM,)
    obama, obama2, biden = (found[n][0].vector for n in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    same, other = float(np.linalg.norm(obama - obama2)), float(np.linalg.norm(obama - biden))
    assert same < 0.40 < other, (same, other)  # IMGSEARCH_FACE_MAX_DISTANCE's default between the two


def test_the_onnx_embedding_equals_dlibs_own_network() -> None:
    """The embedding runs on ONNX Runtime from dlib's model file: its vectors are dlib's, to float precision."""
    import dlib
    import face_recognition_models as files

    from adapters import dlib_resnet_onnx

    pixels = np.asarray(facefiles.photo(facefiles.GROUP).convert("RGB"))
    shapes = dlib.full_object_detections()
    for rect in dlib.get_frontal_face_detector()(pixels, 1):
        shapes.append(dlib.shape_predictor(files.pose_predictor_five_point_model_location())(pixels, rect))
    chips = dlib.get_face_chips(pixels, shapes, faces.CHIP_SIZE, faces.CHIP_PADDING)
    path = files.face_recognition_model_location()
    theirs = np.asarray(dlib.face_recognition_model_v1(path).compute_face_descriptor(chips))
    ours = faces.resnet_session(path).run(None, {"chip": np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)})[0]
    assert theirs.shape == ours.shape == (facefiles.GROUP_FACES, faces.DIM)
    assert np.abs(theirs - ours).max() < 1e-5
    with (
        open(files.pose_predictor_five_point_model_location(), "rb") as other,
        pytest.raises(dlib_resnet_onnx.DlibFormatError),
    ):
        dlib_resnet_onnx.convert(other)  # another dlib file is refused, never read as a wrong network


@pytest.fixture(scope="module")
def small_faces() -> faces.DlibFaces:
    found = faces.DlibFaces(min_size=40)  # IMGSEARCH_FACE_MIN_SIZE=40: the picture is doubled for the detector
    found.load()
    return found


@pytest.mark.parametrize("side", [40, 100, 400])
def test_faces_from_40_to_400_pixels_are_found(small_faces: faces.DlibFaces, side: int) -> None:
    found = small_faces.find(Image.open(io.BytesIO(facefiles.face_of_size(side))))
    assert len(found) == 1 and side * 0.8 <= found[0].box[2] <= side * 1.1, [f.box for f in found]


@pytest.mark.parametrize(("side", "found"), [(40, 0), (100, 1), (400, 1)])
def test_the_default_finds_faces_of_80_pixels_and_more(model: faces.DlibFaces, side: int, found: int) -> None:
    assert len(model.find(Image.open(io.BytesIO(facefiles.face_of_size(side))))) == found


def test_a_picture_without_faces_gives_none(model: faces.DlibFaces) -> None:
    assert model.find(Image.new("RGB", (640, 480), (90, 120, 200))) == []


def _near(pairs: dict[int, list[int]], distance: float = 0.2) -> dict[int, list[tuple[int, float]]]:
    return {face: [(other, distance) for other in others] for face, others in pairs.items()}


def test_two_faces_of_one_photo_never_make_one_person() -> None:
    """Twins side by side: four photos of the pair, every face close to every other."""
    ids = list(range(8))
    table = {i: Face(i, i // 2, None) for i in ids}  # faces 0 and 1 in photo 0, 2 and 3 in photo 1, ...
    outcome = cluster(ids, table, _near({i: [j for j in ids if j != i] for i in ids}), 3)
    persons = {outcome.placed[i] for i in ids if i in outcome.placed}
    assert len(persons) == 2
    for photo in range(4):
        assert outcome.placed.get(2 * photo) != outcome.placed.get(2 * photo + 1)


def test_one_look_alike_face_does_not_bridge_two_persons() -> None:
    """Person 7 (faces 0-3) and a stranger's faces 10-12, which are near each other; face 12 is also near one
    face of person 7. Single-link clustering would chain them; here 12 needs two of person 7's faces."""
    table = {i: Face(i, 100 + i, 7 if i < 4 else None) for i in [0, 1, 2, 3, 10, 11, 12]}
    outcome = cluster([10, 11, 12], table, _near({10: [11, 12], 11: [10, 12], 12: [10, 11, 3]}), 3)
    assert outcome.placed[12] != 7 and len({outcome.placed[i] for i in (10, 11, 12)}) == 1
    joined = cluster([12], {**table, 12: Face(12, 112, None)}, _near({12: [2, 3]}), 3)
    assert joined.placed == {12: 7}


def test_a_face_alone_waits_for_company() -> None:
    table = {0: Face(0, 0, None), 1: Face(1, 1, None)}
    outcome = cluster([0, 1], table, _near({0: [1], 1: [0]}), 3)
    assert outcome.placed == {} and sorted(outcome.waiting) == [0, 1]


def test_the_face_store_on_both_databases(metadata_url: str) -> None:
    metadata = MetadataStore(metadata_url)
    try:
        metadata.create_collection(C, "RN50", 1024, "IP")
        found = metadata.insert_pending(C, [NewImage(f"p{i}", b"x", "image/jpeg", 8, 8, f"{i:064x}") for i in range(4)])
        images = [found[f"p{i}"] for i in range(4)]
        metadata.mark_indexed(images)
        store = FaceStore(metadata.engine)
        new, removed = store.replace(C, "dlib-hog", {images[0]: [FaceBox(1, 2, 30, 30, 1.5)] * 2, images[1]: []})
        assert removed == [] and len(new[images[0]]) == 2 and new[images[1]] == []
        assert store.scanned(images) == {images[0], images[1]} and store.scan_count(C) == (2, 2)
        again, removed = store.replace(C, "dlib-hog", {images[0]: [FaceBox(1, 2, 30, 30, 1.5)]})
        assert sorted(removed) == sorted(new[images[0]]) and len(again[images[0]]) == 1
        face = again[images[0]][0]
        mine, machine = store.create_persons(C, 2)
        store.update_person(mine, name="妈妈")
        store.assign({face: machine})
        assert store.persons(C, [machine])[0].faces == 1 and store.images_with(C, [machine], True) == [images[0]]
        store.forget_machine_work(C)  # the machine's person goes, the named one stays
        assert [p.id for p in store.persons(C)] == [mine] and store.named(C) == {"妈妈": mine}
        assert store.get_faces(C, [face])[face].person is None
        store.assign({face: mine})
        store.forget_machine_work(C)
        assert store.get_faces(C, [face])[face].person == mine  # a named person keeps its faces
        # Read again (a redo): the face found where it was keeps its person; one elsewhere starts unplaced.
        again, _ = store.replace(C, "dlib-hog", {images[0]: [FaceBox(3, 2, 30, 31, 1.4), FaceBox(200, 2, 30, 30, 1.0)]})
        kept, elsewhere = (store.get_faces(C, again[images[0]])[f] for f in again[images[0]])
        assert (kept.person, kept.clustered, elsewhere.person, elsewhere.clustered) == (mine, True, None, False)
        assert sorted(store.delete_faces_of([images[0]])) == sorted(again[images[0]]) and store.scan_count(C) == (1, 0)
        assert store.wipe(C) == [] and store.persons(C) == []
    finally:
        metadata.close()


def _upload(client, photos: dict[str, bytes]) -> dict[str, str]:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos.items()]
    body = client.post("/img/upload", data={"collection": C}, files=files).json()
    assert body["stored"] == len(photos), body
    return {r["file"]: r["image_id"] for r in body["results"]}


def _people(client, everyone: bool = False) -> list[dict]:
    response = client.get(f"/collections/{C}/people", params={"all": everyone})
    assert response.status_code == 200, response.text
    return response.json()["people"]


def test_people_from_upload_to_a_search_by_name(make_settings, make_client) -> None:
    """Faces read at upload (IMGSEARCH_FACES=on): two persons form from camera variants of real photos, a group
    photo's six strangers wait unplaced; names, a correction that survives a clustering from scratch, a split and
    a merge; "奥巴马 在海边" searches 奥巴马's photos; a deleted photo takes its faces; a wipe and a job redo it."""
    shots = facefiles.variants(4, seed=3, names=["obama.jpg", "obama2.jpg", "biden.jpg"])
    photos = {f"{v.person}_{n}.jpg": v.data for n, v in enumerate(shots)}
    photos["group.jpg"] = facefiles.jpeg(facefiles.photo(facefiles.GROUP))
    with make_client(make_settings(faces="on")) as client:
        health = client.get("/healthz").json()
        assert health["faces"] == "on" and "dlib" in health["face_model"]
        ids = _upload(client, photos)
        shown = _people(client)
        assert sorted(p["faces"] for p in shown) == [4, 8], shown  # obama ×8, biden ×4
        assert len(_people(client, everyone=True)) == 2  # the group's six strangers: a face each, waiting
        obama = next(p for p in shown if p["faces"] == 8)
        biden = next(p for p in shown if p["faces"] == 4)
        detail = client.get(f"/collections/{C}/people/{obama['id']}").json()
        assert {f["image_id"] for f in detail["faces"]} == {ids[n] for n in photos if n.startswith("obama")}
        crop = client.get(obama["cover_url"])
        assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).format == "JPEG"
        group = client.get(f"/img/{C}/{ids['group.jpg']}/faces").json()
        assert len(group) == facefiles.GROUP_FACES and {f["person"] for f in group} == {None}

        for person, name in ((obama, "奥巴马"), (biden, "拜登")):
            named = client.patch(f"/collections/{C}/people/{person['id']}", json={"name": name}).json()
            assert named["name"] == name and named["by_user"]
        hits = client.post("/img/search", json={"collection": C, "text": "奥巴马 在海边", "top_k": 20}).json()
        assert hits["query"]["people"] == [{"id": obama["id"], "name": "奥巴马"}]
        assert {h["image_id"] for h in hits["hits"]} == {ids[n] for n in photos if n.startswith("obama")}
        both = {"people_any": [obama["id"], biden["id"]]}
        hits = client.post("/img/search", json={"collection": C, "text": "人", "top_k": 20, "filters": both}).json()
        assert len(hits["hits"]) == 12

        # A correction (one of obama's faces is biden's), kept by a clustering from scratch.
        wrong = detail["faces"][0]["id"]
        moved = client.post(
            f"/collections/{C}/people/{obama['id']}/faces/move", json={"face_ids": [wrong], "to": biden["id"]}
        )
        assert moved.status_code == 200 and moved.json()["faces"] == 5
        job = client.post(f"/collections/{C}/people/cluster", json={"all": True}).json()
        assert wait_for_job(client, job["job_id"])["state"] == "succeeded"
        after = {p["name"]: p for p in _people(client) if p["name"]}
        assert after["拜登"]["faces"] == 5 and after["奥巴马"]["faces"] == 7
        # A split into a new person, then merged back.
        faces_now = client.get(f"/collections/{C}/people/{obama['id']}").json()["faces"]
        split = client.post(
            f"/collections/{C}/people/{obama['id']}/faces/move", json={"face_ids": [f["id"] for f in faces_now[:2]]}
        ).json()
        assert split["faces"] == 2 and split["id"] not in (obama["id"], biden["id"]) and split["shown"]
        merged = client.post(f"/collections/{C}/people/merge", json={"ids": [obama["id"], split["id"]]}).json()
        assert merged["faces"] == 7 and merged["name"] == "奥巴马"
        assert client.get(f"/collections/{C}/people/{split['id']}").status_code == 404

        services = client.app.state.services
        gone = next(n for n in photos if n.startswith("biden"))
        gone_faces = [f["id"] for f in client.get(f"/img/{C}/{ids[gone]}/faces").json()]
        assert client.delete(f"/img/{C}/{ids[gone]}").status_code == 200
        assert services.face_store.get_faces(C, gone_faces) == {}
        assert services.vectors.get(f"{C}__faces", gone_faces) == {}
        bad = client.patch(f"/collections/{C}/people/{obama['id']}", json={"cover_face": gone_faces[0]})
        assert bad.status_code == 422 and "error" in bad.json()

        assert client.delete(f"/collections/{C}/faces").json()["faces_removed"] == 8 + 4 - 1 + 6
        assert _people(client, everyone=True) == []
        job = client.post(f"/collections/{C}/faces", json={}).json()
        done = wait_for_job(client, job["job_id"])
        assert done["state"] == "succeeded" and done["loaded"] == len(photos) - 1, done
        assert sorted(p["faces"] for p in _people(client)) == [3, 8]


def test_without_the_faces_extra_the_service_starts_and_says_so(make_settings, make_client, monkeypatch) -> None:
    monkeypatch.setattr(faces, "available", lambda settings=None: False)
    with make_client(make_settings(faces="on")) as client:
        assert client.get("/healthz").json()["faces"] == "unavailable"
        _upload(client, {"a.jpg": facefiles.jpeg(facefiles.photo("obama.jpg"))})  # stored, without faces
        refused = client.post(f"/collections/{C}/faces", json={})
        assert refused.status_code == 409 and "faces extra" in refused.json()["error"]["message"]
        assert client.get(f"/collections/{C}/people").json()["people"] == []


def test_a_copy_carries_faces_vectors_and_persons(tmp_path, mysql_url, milvus_server_db) -> None:  # type: ignore[no-untyped-def]
    """Embedded stores → MariaDB and a Milvus server: every face with its box and vector (not read again), the
    persons with their names, and a user's correction still marked as the user's."""
    from operations.collections.copy_collection import copy_collection, open_stores

    source = open_stores(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "milvus.db"))
    destination = open_stores(mysql_url, milvus_server_db["milvus_uri"], milvus_server_db["milvus_db"])
    try:
        source.metadata.create_collection(C, "RN50", 1024, "IP")
        source.vectors.ensure_collection(C, 1024)
        rows = [NewImage(f"p{i}", b"x", "image/jpeg", 640, 480, f"{i:064x}") for i in range(6)]
        found = source.metadata.insert_pending(C, rows)
        images = [found[f"p{i}"] for i in range(6)]
        rng = np.random.default_rng(1)
        source.vectors.upsert(C, images, rng.normal(size=(6, 1024)).astype(np.float32))
        source.metadata.mark_indexed(images)
        store = FaceStore(source.metadata.engine)
        new, _ = store.replace(C, "dlib-hog", {i: [FaceBox(5 * n, 10, 40, 40, 1.0)] for n, i in enumerate(images)})
        face_ids = [new[i][0] for i in images]
        vectors = rng.normal(size=(6, faces.DIM)).astype(np.float32)
        source.vectors.ensure_collection(f"{C}__faces", faces.DIM)
        source.vectors.upsert(f"{C}__faces", face_ids, vectors)
        mama, other = store.create_persons(C, 2)
        store.assign({f: mama for f in face_ids[:4]} | {face_ids[4]: other})
        store.update_person(mama, name="妈妈")
        store.assign({face_ids[3]: other}, by_user=True)  # a correction

        report = copy_collection(source, destination, C)
        assert report.faces == 6, report.summary()
        copied = FaceStore(destination.metadata.engine)
        people = {p.name: p for p in copied.persons(C)}
        assert people["妈妈"].faces == 3 and people[None].faces == 2 and people["妈妈"].by_user
        rows_there = copied.all_faces(C)
        assert sum(r.by_user for r in rows_there) == 1 and sum(r.person is None for r in rows_there) == 1
        there = destination.vectors.get(f"{C}__faces", [r.id for r in rows_there])
        assert sorted(np.round(v, 5).tolist() for v in there.values()) == sorted(np.round(vectors, 5).tolist())
        again = copy_collection(source, destination, C)  # nothing new: no face twice
        assert again.faces == 0 and len(copied.all_faces(C)) == 6
    finally:
        source.close()
        destination.close()


def test_an_export_carries_faces_and_names_that_a_load_restores(
    make_settings, make_client, tmp_path, data_root
) -> None:  # type: ignore[no-untyped-def]
    """`imgsearch export` writes each read photo's faces (boxes, vectors, persons and their names); /img/load
    into another service restores them without reading a face again: the name finds the person there."""
    from operations.collections.copy_collection import open_stores
    from operations.collections.export_collection import export_collection

    shots = facefiles.variants(3, seed=4, names=["obama.jpg", "biden.jpg"])
    settings = make_settings(faces="on")
    with make_client(settings) as client:
        ids = _upload(client, {f"{s.person}_{n}.jpg": s.data for n, s in enumerate(shots)})
        people = _people(client)
        assert sorted(p["faces"] for p in people) == [3, 3], people
        for person in people:
            detail = client.get(f"/collections/{C}/people/{person['id']}").json()
            files = {name for name, image in ids.items() if image in {f["image_id"] for f in detail["faces"]}}
            if all(name.startswith("obama") for name in files):
                assert client.patch(f"/collections/{C}/people/{person['id']}", json={"name": "奥巴马"}).is_success
        before = {p["name"]: p["faces"] for p in _people(client)}
    assert before == {"奥巴马": 3, None: 3}

    folder = data_root / f"faces_backup_{tmp_path.name}"
    stores = open_stores(str(settings.metadata_url), str(settings.milvus_uri))
    try:
        report = export_collection(stores, C, folder, split="bak")
    finally:
        stores.close()
    assert report.count == 6 and (folder / "bak_faces.jsonl").is_file()
    assert "bak_faces.jsonl" in json.loads((folder / "bak_export.json").read_text())["files"]
    with (folder / "bak_faces.jsonl").open("a", encoding="utf-8") as damaged:  # a line cut short: skipped, not fatal
        damaged.write('{"image_id": "x", "faces": [{"box": [1, 2]\n')

    restored = make_settings(
        f"sqlite:///{tmp_path / 'restored.db'}", milvus={"milvus_uri": str(tmp_path / "restored_milvus.db")}
    )
    with make_client(restored) as client:
        response = client.post("/img/load", json={"collection": C, "path": folder.name, "split": "bak"})
        job = wait_for_job(client, response.json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 6, job
        assert {p["name"]: p["faces"] for p in _people(client)} == before  # no face job ran: faces is off here
        found = client.post("/img/search", json={"collection": C, "text": "奥巴马", "top_k": 10}).json()
        assert found["query"]["people"] and {h["image_id"] for h in found["hits"]} == {
            image for name, image in ids.items() if name.startswith("obama")
        }, found
