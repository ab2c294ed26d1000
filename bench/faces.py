"""People through the service's own code: faces found and grouped on real photos with a camera's changes, grouping
at scale on synthetic face vectors, the face pass on 12-megapixel phone photos against the image encoder alone
(same run), and the people filter over 100k images against brute force on Milvus Lite and a Milvus server.

    .venv/bin/python bench/faces.py [--per-photo 10] [--persons 1000] [--singletons 20000] [--images 100000]

Stages:
- real: camera variants (crop, scale 0.5-2x, ±15°, JPEG q40-95, brightness ±30%, mirror) of the real face photos
  in tests/data/faces, plus a group photo of six strangers, read by dlib (HOG, 5-point alignment, ResNet) through
  ``operations.people.faces`` and grouped by ``operations.people.cluster_job`` at the default settings; pairwise
  precision and recall against the photos' persons (faces found / faces there, reported apart).
- sizes: obama.jpg's face scaled to 40-400 pixels on a 1280-pixel canvas: found or not, with
  IMGSEARCH_FACE_MIN_SIZE=40 and at the default 80.
- scale: persons × 50 face vectors (128-d, unit; spread like dlib's: most pairs 0.2-0.35 apart, a tail past the
  threshold; every tenth person a sibling of the one before, centres 0.5 apart) and singletons, in the face store
  and Milvus Lite; a full clustering, then 1% more faces and an incremental one (faces it looks at, its time).
- speed: 12 MP JPEG phone photos of the real faces (4032 × 3024, EXIF), synced from a folder (1280-pixel
  previews), then the face job over them (photos/s) against the image encoder alone on the same previews as
  ready tensors (RN50, random weights, ONNX Runtime), before and after; then again with IMGSEARCH_FACE_MIN_SIZE=40.
- filter: images with 512-d vectors and faces of 40 persons (each in ~2% of the photos), FLAT index: the people
  filters' top 10 against numpy over the filtered set, on Milvus Lite and on a Milvus 2.3.5 server.

Floors (issue 32): real: precision 1.0, recall ≥ 0.9, faces of 40-400 px found; scale: precision ≥ 0.99,
recall ≥ 0.9, the incremental run looks at the new faces only and takes ≤ 5% of the full run; speed: the face
pass ≥ 0.5x the encoder alone; filter: results equal to brute force on both stores.
Writes bench/RESULTS.md (section "faces"); exit status 1 when a floor is missed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import pct  # noqa: E402
from PIL import Image  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from adapters import faces, images  # noqa: E402
from adapters.stores.sql.face_store import FaceBox  # noqa: E402
from adapters.stores.sql.metadata_store import NewImage  # noqa: E402
from config import Settings  # noqa: E402
from operations.ingest import sources, sync  # noqa: E402
from operations.jobs.job_progress import JobProgress  # noqa: E402
from operations.people import cluster_job, face_vectors  # noqa: E402
from operations.people import faces as face_job  # noqa: E402
from operations.search import search_filters  # noqa: E402
from operations.search.search_batch import search_vectors  # noqa: E402
from operations.services import Services, build_services  # noqa: E402
from tests import facefiles  # noqa: E402
from tests.milvus_server import LocalMilvusServer  # noqa: E402

FLOORS = {"precision": 1.0, "recall": 0.9, "scale_precision": 0.99, "scale_recall": 0.9, "incremental": 0.05}
FLOORS |= {"speed": 0.5}
SIZES = (40, 60, 80, 120, 200, 300, 400)
DIM = 512


def services_for(work: Path, name: str, **more: object) -> Services:
    settings = Settings(
        _env_file=None,
        data_dir=work / name,
        data_root=work / "data",
        weights="random",
        **more,  # type: ignore[arg-type]
    )
    return build_services(settings)


def image_rows(
    services: Services, collection: str, data: list[bytes], sizes: list[tuple[int, int]], first: int = 0
) -> list[int]:
    """New rows, numbered from ``first`` (a later call for more photos must not name the earlier ones again)."""
    items = [
        NewImage(f"p{first + n}", item, "image/jpeg", w, h, f"{first + n:064x}")
        for n, (item, (w, h)) in enumerate(zip(data, sizes, strict=True))
    ]
    ids: list[int] = []
    for start in range(0, len(items), 5000):
        chunk = items[start : start + 5000]
        found = services.metadata.insert_pending(collection, chunk)
        ids += [found[item.image_id] for item in chunk]
    services.metadata.mark_indexed(ids)
    return ids


def pairwise(groups: dict[int, list[str]], truth: list[str]) -> tuple[float, float]:
    """Pairwise precision and recall of the persons ``groups`` (person -> the true names of its faces)."""
    predicted = sum(len(v) * (len(v) - 1) // 2 for v in groups.values())
    right = sum(k * (k - 1) // 2 for v in groups.values() for k in Counter(v).values())
    possible = sum(k * (k - 1) // 2 for k in Counter(truth).values())
    return right / max(predicted, 1), right / max(possible, 1)


def real(work: Path, per_photo: int) -> dict:
    services = services_for(work, "real")
    try:
        services.metadata.create_collection("real", "RN50", 1024, "IP")
        shots = facefiles.variants(per_photo, seed=11)
        data = [s.data for s in shots] + [facefiles.jpeg(facefiles.photo(facefiles.GROUP))]
        sizes = [Image.open(io.BytesIO(d)).size for d in data]
        ids = image_rows(services, "real", data, sizes)
        started = time.perf_counter()
        found = face_job.read_into(services, "real", ids)
        seconds = time.perf_counter() - started
        report = cluster_job.run(services, "real")
        person_of = {i: s.person for i, s in zip(ids, shots, strict=False)}
        expected = len(shots) + facefiles.GROUP_FACES
        detected = sum(len(v) for v in found.values())
        rows = services.face_store.all_faces("real")
        truth = [person_of.get(r.image, f"group{r.id}") for r in rows]
        groups: dict[int, list[str]] = {}
        for row, name in zip(rows, truth, strict=True):
            if row.person is not None:
                groups.setdefault(row.person, []).append(name)
        precision, recall = pairwise(groups, truth)
        small = faces.build(Settings(_env_file=None, face_min_size=40))  # type: ignore[call-arg]
        sizes_found, sizes_default = {}, {}
        for side in SIZES:
            picture = Image.open(io.BytesIO(facefiles.face_of_size(side)))
            sizes_found[side] = len(small.find(picture)) == 1
            sizes_default[side] = len(services.faces.find(picture)) == 1
        return {
            "photos": len(data),
            "expected": expected,
            "detected": detected,
            "seconds": seconds,
            "persons": report.new_persons,
            "waiting": report.waiting,
            "precision": precision,
            "recall": recall,
            "groups": sorted((dict(Counter(v)) for v in groups.values()), key=lambda g: -sum(g.values())),
            "sizes": sizes_found,
            "sizes_default": sizes_default,
        }
    finally:
        services.close()


def synthetic(persons: int, singletons: int, per_person: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Face vectors spread like dlib's on real photos, and each one's person (-1 - n: a singleton)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(persons, faces.DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for i in range(1, persons, 10):  # siblings: centres 0.5 apart
        away = rng.normal(size=faces.DIM)
        away -= (away @ centres[i - 1]) * centres[i - 1]
        away /= np.linalg.norm(away)
        angle = 2 * np.arcsin(0.5 / 2)
        centres[i] = np.cos(angle) * centres[i - 1] + np.sin(angle) * away
    spread = rng.lognormal(np.log(0.017), 0.25, size=(persons * per_person, 1))
    vectors = np.repeat(centres, per_person, axis=0) + spread * rng.normal(size=(persons * per_person, faces.DIM))
    vectors = np.vstack([vectors, rng.normal(size=(singletons, faces.DIM))]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = np.concatenate([np.repeat(np.arange(persons), per_person), -1 - np.arange(singletons)])
    order = rng.permutation(len(vectors))
    return vectors[order], truth[order]


def scale(work: Path, persons: int, singletons: int) -> dict:
    vectors, truth = synthetic(persons, singletons, 50, seed=5)
    extra = max(2, len(vectors) // 100)
    rng = np.random.default_rng(6)
    # New faces: half near known persons' faces (a new photo of someone known), half new singletons.
    person_faces = np.flatnonzero(truth >= 0)
    sources_ = rng.choice(person_faces, extra - extra // 2, replace=False)
    fresh = vectors[sources_] + 0.012 * rng.normal(size=(len(sources_), faces.DIM)).astype(np.float32)
    fresh = np.vstack([fresh, rng.normal(size=(extra // 2, faces.DIM)).astype(np.float32)])
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    fresh_truth = np.concatenate([truth[sources_], -(10**7) - np.arange(extra // 2)])
    services = services_for(work, "scale", lite_mirror_mb=512)
    try:
        services.metadata.create_collection("scale", "RN50", 1024, "IP")
        started = time.perf_counter()
        images_ = image_rows(services, "scale", [b"x"] * len(vectors), [(1, 1)] * len(vectors))
        new, _ = services.face_store.replace("scale", "synthetic", {i: [FaceBox(0, 0, 100, 100, 1.0)] for i in images_})
        face_ids = [new[i][0] for i in images_]
        face_vectors.put(services.vectors, "scale", face_ids, vectors)
        written = time.perf_counter() - started
        full = cluster_job.run(services, "scale", everything=True)
        added = image_rows(services, "scale", [b"x"] * len(fresh), [(1, 1)] * len(fresh), first=len(vectors))
        new, _ = services.face_store.replace("scale", "synthetic", {i: [FaceBox(0, 0, 100, 100, 1.0)] for i in added})
        fresh_ids = [new[i][0] for i in added]
        face_vectors.put(services.vectors, "scale", fresh_ids, fresh)
        incremental = cluster_job.run(services, "scale")
        name_of = dict(zip(face_ids + fresh_ids, [*truth.tolist(), *fresh_truth.tolist()], strict=True))
        rows = services.face_store.all_faces("scale")
        groups: dict[int, list[str]] = {}
        for row in rows:
            if row.person is not None:
                groups.setdefault(row.person, []).append(str(name_of[row.id]))
        precision, recall = pairwise(groups, [str(name_of[r.id]) for r in rows])
        return {
            "faces": len(vectors),
            "added": len(fresh),
            "written_s": written,
            "full_s": full.seconds,
            "full_persons": full.new_persons,
            "incremental_s": incremental.seconds,
            "incremental_seen": incremental.seen,
            "incremental_retried": incremental.retried,
            "share": incremental.seconds / full.seconds,
            "precision": precision,
            "recall": recall,
            "persons": len(groups),
        }
    finally:
        services.close()


def phone_photos(folder: Path, count: int) -> None:
    """12 MP JPEGs with EXIF, each a real face photo filling the frame (a portrait as a phone takes it)."""
    folder.mkdir(parents=True)
    names = list(facefiles.PEOPLE)
    for n in range(count):
        source = facefiles.photo(names[n % len(names)] if n % 4 else facefiles.GROUP)
        scale_ = max(4032 / source.width, 3024 / source.height)
        big = source.resize((round(source.width * scale_), round(source.height * scale_)), Image.Resampling.BICUBIC)
        left, top = (big.width - 4032) // 2, (big.height - 3024) // 2
        big = big.crop((left, top, left + 4032, top + 3024))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Google", "Pixel 8"  # make, model
        exif[0x0132] = f"2024:07:{1 + n % 28:02d} 10:00:00"  # DateTime
        exif[0x0112] = 1  # orientation: upright
        out = io.BytesIO()
        big.save(out, "JPEG", quality=90, exif=exif)
        (folder / f"IMG_{n:04d}.JPG").write_bytes(out.getvalue())


def encoder_alone(services: Services, previews: list[bytes], rounds: int = 2) -> float:
    encoder = services.encoder
    pixels = [encoder.preprocess(images.decode_rgb(p, 10**9)) for p in previews]
    encoder.encode_pixels(pixels[:8])
    started = time.perf_counter()
    for _ in range(rounds):
        for start in range(0, len(pixels), 16):
            encoder.encode_pixels(pixels[start : start + 16])
    return rounds * len(pixels) / (time.perf_counter() - started)


def speed(work: Path, count: int) -> dict:
    phone_photos(work / "data" / "phone", count)
    services = services_for(work, "speed")
    try:
        services.encoder.load()
        services.faces.load()
        record = sources.add(services, "phone", "phone", [], False)
        sync.run(services, record, JobProgress())
        previews = [r.data for page in services.metadata.iter_image_pages("phone") for r in page]
        before = encoder_alone(services, previews)
        seconds, found = timed_face_job(services)
        after = encoder_alone(services, previews)
    finally:
        services.close()
    services = services_for(work, "speed", face_min_size=40)  # the same photos, faces of 40 px and more
    try:
        services.faces.load()
        smaller, found_smaller = timed_face_job(services)
    finally:
        services.close()
    floor = (before + after) / 2
    return {
        "photos": len(previews),
        "faces": found,
        "rate": len(previews) / seconds,
        "floor": floor,
        "floors": (before, after),
        "share": len(previews) / seconds / floor,
        "rate_40": len(previews) / smaller,
        "faces_40": found_smaller,
        "share_40": len(previews) / smaller / floor,
        "mb": sum(f.stat().st_size for f in (work / "data" / "phone").iterdir()) / 2**20,
    }


def timed_face_job(services: Services) -> tuple[float, int]:
    """Seconds of a face job over every photo, and the faces it found. Set up first, as after a collection's first
    face job: the worker processes started, the face collection made (Milvus waits ~0.5 s for its index)."""
    if services.face_pool is not None:
        services.face_pool.warm()
    services.vectors.ensure_collection(face_vectors.collection_name("phone"), faces.DIM)
    started = time.perf_counter()
    face_job.run_job(services, "phone", JobProgress(), redo=True)
    return time.perf_counter() - started, services.face_store.scan_count("phone")[1]


def people_filter(work: Path, count: int, milvus: dict, label: str) -> dict:
    rng = np.random.default_rng(8)
    services = services_for(work, f"filter-{label}", index_type="FLAT", index_params={}, **milvus)
    try:
        record = services.metadata.create_collection("f", "ViT-B-16", DIM, "IP")
        ids = image_rows(services, "f", [b"x"] * count, [(1, 1)] * count)
        vectors = rng.normal(size=(count, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        services.vectors.ensure_collection("f", DIM)
        for start in range(0, count, 10_000):
            services.vectors.upsert("f", ids[start : start + 10_000], vectors[start : start + 10_000])
        services.vectors.flush("f")
        people = services.face_store.create_persons("f", 40)
        member = rng.random((count, len(people))) < 0.02
        boxes = {
            ids[i]: [FaceBox(10 * k, 10, 50, 50, 1.0) for k in np.flatnonzero(member[i])]
            for i in range(count)
            if member[i].any()
        }
        new, _ = services.face_store.replace("f", "synthetic", boxes)
        placed = {}
        index_of = {image: n for n, image in enumerate(ids)}
        for image, faces_ in new.items():
            for face, person in zip(faces_, np.flatnonzero(member[index_of[image]]), strict=True):
                placed[face] = people[person]
        services.face_store.assign(placed)
        services.vectors.warm("f")
        record = services.metadata.get_collection("f")
        exact = total = 0
        latencies: list[float] = []
        plain: list[float] = []
        for _ in range(30):
            query = rng.normal(size=DIM).astype(np.float32)
            query /= np.linalg.norm(query)
            chosen = [int(p) for p in rng.choice(len(people), 3, replace=False)]
            cases = [
                (search_filters.SearchFilters(people=(people[chosen[0]],)), member[:, chosen[0]]),
                (search_filters.SearchFilters(people_any=tuple(people[c] for c in chosen)), member[:, chosen].any(1)),
                (
                    search_filters.SearchFilters(people=(people[chosen[0]], people[chosen[1]])),
                    member[:, chosen[0]] & member[:, chosen[1]],
                ),
            ]
            for filters, keep in cases:
                started = time.perf_counter()
                expression = search_filters.expression(services, record, filters)
                hits = search_vectors(
                    services.vectors, services.metadata, "f", "x", query[None, :], 10, False, filter=expression
                )
                latencies.append((time.perf_counter() - started) * 1000)
                allowed = np.flatnonzero(keep)
                scores = vectors[allowed] @ query
                truth = [ids[i] for i in allowed[np.argsort(-scores, kind="stable")][:10]]
                exact += [h.id for h in hits[0].hits] == truth
                total += 1
            started = time.perf_counter()
            search_vectors(services.vectors, services.metadata, "f", "x", query[None, :], 10, False)
            plain.append((time.perf_counter() - started) * 1000)
        return {
            "images": count,
            "faces": len(placed),
            "exact": exact,
            "total": total,
            "p50": pct(latencies, 50),
            "p99": pct(latencies, 99),
            "plain_p50": pct(plain, 50),
        }
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-photo", type=int, default=10, help="camera variants of each real face photo")
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--singletons", type=int, default=20_000)
    parser.add_argument("--photos", type=int, default=24, help="12 MP phone photos for the speed stage")
    parser.add_argument("--images", type=int, default=100_000, help="images for the people filter")
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        found = real(work, args.per_photo)
        print({k: v for k, v in found.items() if k != "groups"}, flush=True)
        grouped = scale(work, args.persons, args.singletons)
        print(grouped, flush=True)
        fast = speed(work, args.photos)
        print(fast, flush=True)
        filtered = [people_filter(work, args.images, {}, "lite")]
        print(filtered[-1], flush=True)
        if not args.skip_server:
            server = LocalMilvusServer(work / "milvus").start()
            try:
                filtered.append(people_filter(work, args.images, {"milvus_uri": server.uri}, "server"))
            finally:
                server.stop()
            print(filtered[-1], flush=True)
    checks = [
        (f"real faces: pairwise precision {FLOORS['precision']}", found["precision"] >= FLOORS["precision"]),
        (f"real faces: pairwise recall ≥ {FLOORS['recall']}", found["recall"] >= FLOORS["recall"]),
        ("faces of 40-400 px found (IMGSEARCH_FACE_MIN_SIZE=40)", all(found["sizes"].values())),
        (f"scale: precision ≥ {FLOORS['scale_precision']}", grouped["precision"] >= FLOORS["scale_precision"]),
        (f"scale: recall ≥ {FLOORS['scale_recall']}", grouped["recall"] >= FLOORS["scale_recall"]),
        (
            "scale: the incremental run looks at the new faces only (and waiting faces they landed near)",
            grouped["incremental_seen"] - grouped["incremental_retried"] == grouped["added"],
        ),
        (
            f"scale: incremental ≤ {FLOORS['incremental']:.0%} of the full run",
            grouped["share"] <= FLOORS["incremental"],
        ),
        (f"face pass ≥ {FLOORS['speed']}x the image encoder alone", fast["share"] >= FLOORS["speed"]),
        *((f"people filter = brute force ({r['label']})", r["exact"] == r["total"]) for r in _labelled(filtered)),
    ]
    table = _table(found, grouped, fast, _labelled(filtered), checks)
    print(table)
    write_section("faces", table)
    return 0 if all(ok for _, ok in checks) else 1


def _labelled(results: list[dict]) -> list[dict]:
    return [{**r, "label": label} for r, label in zip(results, ("Milvus Lite", "Milvus 2.3.5 server"), strict=False)]


def _table(found: dict, grouped: dict, fast: dict, filtered: list[dict], checks: list[tuple[str, bool]]) -> str:
    sizes = ", ".join(f"{s} px {'✓' if ok else '✗'}" for s, ok in found["sizes"].items())
    sizes_default = ", ".join(f"{s} px {'✓' if ok else '✗'}" for s, ok in found["sizes_default"].items())
    lines = [
        "## faces: people through the service (bench/faces.py)",
        "",
        f"{run_header()} · dlib 20.0.1 (dlib-bin: HOG detector, 5-point alignment; its ResNet 128-d on ONNX Runtime, "
        "real weights) · IMGSEARCH_FACE_MIN_SIZE 80, IMGSEARCH_FACE_MAX_DISTANCE 0.40, IMGSEARCH_FACE_MIN_FACES 3 "
        "(the defaults)",
        "",
        "| stage | measured | floor (same run) | result |",
        "|---|---|---|---|",
        f"| real faces: {found['photos']} photos (camera variants of tests/data/faces, a group of six) | faces found "
        f"{found['detected']} of {found['expected']} in {found['seconds']:.1f} s; {found['persons']} persons, "
        f"{found['waiting']} faces waiting | — | precision **{found['precision']:.3f}**, recall "
        f"**{found['recall']:.3f}** |",
        f"| face sizes on a 1280-pixel picture, IMGSEARCH_FACE_MIN_SIZE=40 | {sizes} | — | — |",
        f"| the same at the default IMGSEARCH_FACE_MIN_SIZE=80 | {sizes_default} | — | — |",
        f"| scale: {grouped['faces']:,} synthetic faces (persons × 50, singletons) | full run "
        f"{grouped['full_s']:.1f} s, {grouped['full_persons']} persons | — | precision **{grouped['precision']:.4f}**, "
        f"recall **{grouped['recall']:.4f}** |",
        f"| incremental: {grouped['added']} faces more (1%) | {grouped['incremental_s']:.2f} s, looked at "
        f"{grouped['incremental_seen'] - grouped['incremental_retried']} new faces and "
        f"{grouped['incremental_retried']} waiting faces beside them | full run {grouped['full_s']:.1f} s | "
        f"**{grouped['share']:.1%}** |",
        f"| face job on {fast['photos']} × 12 MP JPEG ({fast['mb']:.0f} MB; read on the 1280-pixel previews) | "
        f"{fast['rate']:.2f} photos/s, {fast['faces']} faces | RN50 image encoder alone on the same previews "
        f"{fast['floor']:.1f} images/s ({', '.join(f'{f:.1f}' for f in fast['floors'])}) | **{fast['share']:.2f}x** |",
        f"| the same with IMGSEARCH_FACE_MIN_SIZE=40 (the picture doubled) | {fast['rate_40']:.2f} photos/s, "
        f"{fast['faces_40']} faces | the same | {fast['share_40']:.2f}x |",
        *(
            f"| people filter, {r['images']:,} images, {r['faces']:,} faces, FLAT, {r['label']} | top 10 equal to "
            f"brute force in {r['exact']} of {r['total']} searches; p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms | "
            f"unfiltered search p50 {r['plain_p50']:.1f} ms | {r['p50'] / r['plain_p50']:.2f}x |"
            for r in filtered
        ),
    ]
    lines += ["", "| floor | result |", "|---|---|", *(f"| {n} | {'pass' if ok else 'FAIL'} |" for n, ok in checks)]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
