"""Encoding on a real local Ray cluster of two nodes (1 CPU each, token authentication, everything on 127.0.0.1):
a re-embed whose vectors are the local encoder's and that both nodes encoded, a worker node killed mid-job, and a
cluster that cannot be reached. The collection is loaded as ViT-B-16 from random feature files (nothing to
encode) and re-embedded to RN50 on the cluster."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapters import images
from adapters.ocr import OcrReader
from config import Settings
from operations.ingest.encode_stage import prepare
from operations.ingest.sample_data import generate_split
from tests.conftest import wait_for_job
from tests.imagefiles import encode, photo
from tests.ray_cluster import two_node_cluster
from tests.text_pictures import text_pictures

C = "rayed"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with two_node_cluster(tmp_path_factory.mktemp("ray")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def vit_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 generated pictures with random 512-d features: a ViT-B-16 collection that loads without encoding."""
    directory = tmp_path_factory.mktemp("rayed") / "split"
    generate_split(directory, "train", 60, encoder=None, seed=5)
    rng = np.random.default_rng(5)
    with (directory / "train_imgs.img_feat.jsonl").open("w") as out:
        for line in (directory / "train_imgs.tsv").open():
            vector = rng.normal(size=512).astype(np.float32)
            vector /= np.linalg.norm(vector)
            out.write(json.dumps({"image_id": int(line.split("\t", 1)[0]), "feature": vector.tolist()}) + "\n")
    return directory


def _client(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient], data_root: Path, split: Path, **ray
) -> TestClient:
    if not (data_root / "rayed").exists():  # loads read below the data root only (links out are refused)
        shutil.copytree(split, data_root / "rayed")
    defaults = {"ray_pool_size": 2, "ray_cpus_per_actor": 1, "ray_batch_size": 4, "ray_window": 64}
    settings = make_settings(encode_batch_size=8, **{**defaults, **ray})
    return make_client(settings)


def _vit_collection(client: TestClient) -> None:
    body = {"collection": C, "path": "rayed", "split": "train", "model": "ViT-B-16"}
    job = wait_for_job(client, client.post("/img/load", json=body).json()["job_id"])
    assert job["state"] == "succeeded" and job["loaded"] == 60, job


def test_a_reembed_on_two_nodes_gives_the_local_vectors_and_both_nodes_encoded(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    import ray

    with _client(make_settings, make_client, data_root, vit_split, ray_address=cluster.address) as client:
        _vit_collection(client)
        started = client.post(f"/collections/{C}/reembed", json={"model": "RN50"})
        job = wait_for_job(client, started.json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 60 and job["failed"] == 0, job
        nodes = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        assert nodes == {"127.0.0.1"} and len([n for n in ray.nodes() if n["Alive"]]) == 2  # both on loopback
        encoded_by = job["result"]["encoded_by"]
        assert len(encoded_by) == 2 and sum(encoded_by.values()) == 60, encoded_by  # each node did a part
        assert all(name.startswith("127.0.0.1/") for name in encoded_by)

        services = client.app.state.services  # type: ignore[attr-defined]
        record = services.metadata.get_collection(C)
        assert record.model == "RN50" and services.vectors.count(record.vector_collection) == 60
        rows = services.metadata.fetch(C, [r for r, _ in next(services.metadata.iter_id_pages(C, 60))], with_data=True)
        local = services.models.get("RN50")  # this process's encoder (torch); the actors run ONNX Runtime
        ids = sorted(rows)[:12]
        mine = local.encode_pixels([local.preprocess(images.decode_rgb(rows[i].data, 10**8)) for i in ids])
        theirs = services.vectors.get(record.vector_collection, ids)
        assert min(float(np.dot(mine[k], theirs[i])) for k, i in enumerate(ids)) >= 0.99999
        result = client.post("/img/search", json={"collection": C, "text": "海边", "mode": "semantic"}).json()
        assert result["model"] == "RN50" and len(result["hits"]) == 10


def test_a_worker_node_killed_mid_job_still_ends_with_exact_counts(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    """Ray restarts the lost actor and retries its batches on the node that is left: the job succeeds, every image
    encoded once in the new generation."""
    worker = next(node for node in cluster.list_all_nodes() if not node.head)
    with _client(make_settings, make_client, data_root, vit_split, ray_address=cluster.address) as client:
        _vit_collection(client)
        job_id = client.post(f"/collections/{C}/reembed", json={"model": "RN50"}).json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/jobs/{job_id}").json())["loaded"] < 8:
            assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)  # the worker node dies with its actor
        job = wait_for_job(client, job_id)
        assert job["state"] == "succeeded" and job["loaded"] == 60 and job["failed"] == 0, job
        services = client.app.state.services  # type: ignore[attr-defined]
        record = services.metadata.get_collection(C)
        assert services.vectors.count(record.vector_collection) == services.metadata.count(C) == 60
    cluster.add_node(num_cpus=1, object_store_memory=200_000_000)  # back to two nodes for the tests after
    cluster.wait_for_nodes()


def test_an_unreachable_cluster_fails_the_job_clearly_and_a_rerun_completes_it(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    with _client(make_settings, make_client, data_root, vit_split, ray_address="127.0.0.1:1") as client:
        _vit_collection(client)
        job = wait_for_job(client, client.post(f"/collections/{C}/reembed", json={"model": "RN50"}).json()["job_id"])
        assert job["state"] == "failed" and "Ray cluster at 127.0.0.1:1 unreachable" in job["message"], job
        services = client.app.state.services  # type: ignore[attr-defined]
        record = services.metadata.get_collection(C)
        assert record.model == "ViT-B-16" and record.next_state == "building"  # nothing switched
        assert services.vectors.count(record.next_vectors) == 0  # nothing half-written
    # The same stores (this test's data folder), the cluster's real address this time.
    with _client(make_settings, make_client, data_root, vit_split, ray_address=cluster.address) as client:
        job = wait_for_job(client, client.post(f"/collections/{C}/reembed", json={"model": "RN50"}).json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 60, job  # the same re-embed, resumed
        assert client.app.state.services.metadata.get_collection(C).model == "RN50"  # type: ignore[attr-defined]


def test_an_ingest_and_a_sync_encode_on_the_cluster_with_the_local_end_state(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    """Workers read the files themselves (the data root is shared: one machine) and make the previews."""
    folder = data_root / f"ray_photos_{cluster.address.rsplit(':', 1)[1]}"
    for i in range(24):
        (folder / f"{i % 3}").mkdir(parents=True, exist_ok=True)
        (folder / f"{i % 3}" / f"IMG_{i}.jpg").write_bytes(encode(photo(4000 + i, (1600, 1200)), "JPEG", quality=88))
    ray = {"ray_address": cluster.address, "ray_shared_paths": True}
    with _client(make_settings, make_client, data_root, vit_split, **ray) as client:
        body = {"collection": "ray_ingest", "path": folder.relative_to(data_root).as_posix()}
        job = wait_for_job(client, client.post("/img/ingest", json=body).json()["job_id"])
        assert job["state"] == "succeeded" and job["loaded"] == 24, job
        assert sum(job["result"]["encoded_by"].values()) == 24 and len(job["result"]["encoded_by"]) == 2, job

        source = client.post("/collections/ray_sync/sources", json={"path": body["path"]}).json()
        job = wait_for_job(client, client.post(f"/collections/ray_sync/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 24, job
        assert sum(job["result"]["encoded_by"].values()) == 24 and len(job["result"]["encoded_by"]) == 2, job
        services = client.app.state.services  # type: ignore[attr-defined]
        local = services.models.get("RN50")
        for name, preview_size in (("ray_ingest", 0), ("ray_sync", 1280)):  # what this process would have made
            ids = [r for r, _ in next(services.metadata.iter_id_pages(name, 24))]
            stored = services.vectors.get(name, ids)
            for row_id, paths in list(services.sources.paths_of(ids).items())[:6] if preview_size else []:
                data = (data_root / paths[0][0].path / paths[0][1]).read_bytes()
                mine = local.encode_pixels([prepare(data, local, 10**9, preview_size)[0]])[0]
                assert float(np.dot(mine, stored[row_id])) >= 0.99999
            if not preview_size:
                rows = services.metadata.fetch(name, ids[:6], with_data=True)
                mine = local.encode_pixels([prepare(rows[i].data, local, 10**9)[0] for i in ids[:6]])
                assert min(float(np.dot(m, stored[i])) for m, i in zip(mine, ids[:6], strict=True)) >= 0.99999
        previews = services.metadata.fetch("ray_sync", ids[:1], with_data=True)
        assert max(images.probe(previews[ids[0]].data, 10**8, 10**9).width, 0) == 1280  # made on the cluster


def test_ocr_reads_on_the_cluster_at_sync_and_as_a_job(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    """With IMGSEARCH_OCR=on the encoder actors read each synced picture's text on the decode they make anyway, and
    the OCR job reads the stored pictures on OCR actors: the service process never loads an OCR reader."""
    folder = data_root / f"ray_scans_{cluster.address.rsplit(':', 1)[1]}"
    folder.mkdir()
    pictures, texts = text_pictures(6, seed=21)
    for name, data in pictures.items():
        (folder / name).write_bytes(data)
    # A picture a batch: six batches, so both actors have work while the other loads its models.
    ray = {"ray_address": cluster.address, "ray_shared_paths": True, "ocr": "on", "ray_batch_size": 1}
    with _client(make_settings, make_client, data_root, vit_split, **ray) as client:
        source = client.post("/collections/ray_scans/sources", json={"path": folder.name}).json()
        job = wait_for_job(client, client.post(f"/collections/ray_scans/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 6, job
        assert len(job["result"]["encoded_by"]) == 2, job
        services = client.app.state.services  # type: ignore[attr-defined]

        def found_by_words() -> dict[str, dict]:
            hits = {}
            for name, lines in texts.items():
                query = {"collection": "ray_scans", "text": lines[0], "mode": "keyword", "top_k": 10}
                found = client.post("/img/search", json=query).json()["hits"]
                assert f"{folder.name}/{name}" in [path for hit in found for path in hit["paths"]], (name, lines)
                hit = next(h for h in found if f"{folder.name}/{name}" in h["paths"])
                hits[name] = {"id": hit["id"], **client.get(f"/img/ray_scans/{hit['image_id']}/text").json()}
            return hits

        synced = found_by_words()
        assert "ocr" not in vars(services)  # read on the cluster: this process never built its reader
        receipt = synced["receipt0.jpg"]
        assert "增值税普通发票" in receipt["ocr"].replace(" ", "")
        # Boxes in the original's pixels (four times the drawing), not those of the 1280-pixel preview OCR read.
        width = images.probe(pictures["receipt0.jpg"], 10**8, 10**9).width
        assert 1280 < max(x for line in receipt["ocr_lines"] for x, _ in line["box"]) <= width + 1

        job = wait_for_job(client, client.post("/collections/ray_scans/ocr", json={"redo": True}).json()["job_id"])
        assert job["state"] == "succeeded" and (job["loaded"], job["failed"]) == (6, 0), job
        assert len(job["result"]["encoded_by"]) == 2 and sum(job["result"]["encoded_by"].values()) == 6, job
        again = found_by_words()
        assert "ocr" not in vars(services)
        # The job read the stored preview: what this process would read of it, line for line.
        receipt_id = again["receipt0.jpg"]["id"]
        preview = services.metadata.fetch("ray_scans", [receipt_id], with_data=True)[receipt_id].data
        local = OcrReader(threads=1).read(images.picture_for_ocr(preview, 10**9, services.settings.ocr_max_side))
        assert [line["text"] for line in again["receipt0.jpg"]["ocr_lines"]] == [line.text for line in local]


def test_faces_are_read_on_the_cluster_at_sync_and_as_a_job(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path
) -> None:  # type: ignore[no-untyped-def]
    """With IMGSEARCH_FACES=on a synced folder's photos have their faces read by face actors on both nodes (the
    service never loads a face model), the same faces this process finds in the stored previews; the persons
    form in the service, and a face job redoes it all on the cluster."""
    from adapters import faces
    from tests import facefiles

    folder = data_root / f"ray_faces_{cluster.address.rsplit(':', 1)[1]}"
    folder.mkdir()
    shots = facefiles.variants(3, seed=4, names=["obama.jpg", "biden.jpg"])
    for n, shot in enumerate(shots):
        (folder / f"{shot.person}_{n}.jpg").write_bytes(shot.data)
    ray = {"ray_address": cluster.address, "ray_shared_paths": True, "faces": "on", "ray_batch_size": 1}
    with _client(make_settings, make_client, data_root, vit_split, **ray) as client:
        source = client.post("/collections/ray_faces/sources", json={"path": folder.name}).json()
        job = wait_for_job(client, client.post(f"/collections/ray_faces/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 6, job
        services = client.app.state.services  # type: ignore[attr-defined]
        people = client.get("/collections/ray_faces/people").json()
        assert sorted(p["faces"] for p in people["people"]) == [3, 3], people
        job = wait_for_job(client, client.post("/collections/ray_faces/faces", json={"redo": True}).json()["job_id"])
        assert job["state"] == "succeeded" and (job["loaded"], job["failed"]) == (6, 0), job
        assert len(job["result"]["encoded_by"]) == 2 and sum(job["result"]["encoded_by"].values()) == 6, job
        assert "faces" not in vars(services)  # read on the cluster: this process never built its face model
        local = faces.DlibFaces()
        for page in services.metadata.iter_image_pages("ray_faces"):
            for row in page:
                mine = faces.read_picture(row.data, row.width, row.height, 10**9, 1280, local)
                theirs = services.face_store.faces_of("ray_faces", [row.id])[row.id]
                assert sorted((f.box.x, f.box.y, f.box.width) for f in theirs) == sorted(f.box[:3] for f in mine)
        assert sorted(p["faces"] for p in client.get("/collections/ray_faces/people").json()["people"]) == [3, 3]


def test_videos_are_sampled_and_encoded_on_the_cluster_in_pieces(
    cluster, make_settings, make_client, data_root: Path, vit_split: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A video longer than a piece is sampled by both nodes (the service never decodes a frame), and its samples
    are the ones one process would have made, vectors included."""
    from adapters import video
    from operations.ingest import videos
    from tests.videofiles import write_video

    folder = data_root / f"ray_videos_{cluster.address.rsplit(':', 1)[1]}"
    folder.mkdir()
    write_video(folder / "long.mp4", seconds=12, patterned=True)
    write_video(folder / "short.mov", seconds=3, scene_offset=30, patterned=True)
    ray = {"ray_address": cluster.address, "ray_shared_paths": True, "video_piece_seconds": 4}
    with _client(make_settings, make_client, data_root, vit_split, **ray) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        local = videos.encode(folder / "long.mp4", services.models.get("RN50"), services.settings)
        real_sample, real_picture = video.sample, video.upright_picture
        refuse = lambda *a, **k: pytest.fail("a frame was decoded in the service")  # noqa: E731
        monkeypatch.setattr(video, "sample", refuse)
        monkeypatch.setattr(video, "upright_picture", refuse)
        source = client.post("/collections/ray_videos/sources", json={"path": folder.name}).json()
        job = wait_for_job(client, client.post(f"/collections/ray_videos/sources/{source['id']}/sync").json()["job_id"])
        assert job["state"] == "succeeded" and job["result"]["counts"]["stored"] == 2, job
        assert len(job["result"]["encoded_by"]) == 2, job  # the long video's pieces went to both nodes
        monkeypatch.setattr(video, "sample", real_sample)
        monkeypatch.setattr(video, "upright_picture", real_picture)
        sha = videos.read_facts(folder / "long.mp4", 1 << 30).facts.sha256
        row = services.metadata.lookup_sha("ray_videos", [sha])[sha].id
        frames = services.metadata.frames_of([row])[row]
        assert [ms for _, ms in frames] == [frame.ms for frame in local.frames]
        stored = services.vectors.get("ray_videos", [frame for frame, _ in frames])
        for (frame, _), mine in zip(frames, local.frames, strict=True):
            assert float(np.dot(stored[frame], mine.vector)) >= 0.9999
