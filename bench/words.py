"""Words in and about pictures: OCR of rendered Chinese text (receipts, timetables, signs, chat screenshots; plain
and busy backgrounds, some rotated), keyword recall on what OCR read and on Flickr30k-CN-style captions, the CPU
cost of OCR next to encoding and what OCR at ingest does to the ingest rate, keyword search over 100k images on
both metadata backends, and hybrid against semantic search at 30k and 100k images on both backends, for words,
common words (in ≥ 10% of captions) and caption-like sentences (same run).

    .venv/bin/python bench/words.py [--pictures 200] [--keyword-rows 100000] [--hybrid-rows 30000 100000]

Embedded defaults (Milvus Lite + SQLite) and the local MariaDB; RN50 random weights on ONNX Runtime.
Writes bench/RESULTS.md (section "words"); exit status 1 when a floor is missed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench/core.py

import argparse
import random
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core import drop_database  # noqa: E402
from results_file import run_header, write_section  # noqa: E402

from adapters import ocr  # noqa: E402
from adapters.stores.sql.metadata_store import MetadataStore, NewImage  # noqa: E402
from adapters.stores.sql.text_store import TextStore  # noqa: E402
from config import Settings  # noqa: E402
from operations.ingest import ingest_job  # noqa: E402
from operations.ingest.file_sources import FileSource  # noqa: E402
from operations.jobs.job_progress import JobProgress  # noqa: E402
from operations.search import hybrid, keyword  # noqa: E402
from operations.search.search_batch import hits_for  # noqa: E402
from operations.services import build_services  # noqa: E402
from tests.text_pictures import draw, jpeg_of, lines_for  # noqa: E402

FLOORS = {
    "ocr_accuracy": 0.90,
    "ocr_recall": 0.95,
    "keyword_p50_ms": 20.0,
    "hybrid_ratio": 1.3,
    "hybrid_ratio_100k": 1.5,
}
KINDS = ("receipt", "timetable", "sign", "chat")
COMMON = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"  # noqa: E501


def _folded(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def rendered_set(count: int, seed: int = 2026) -> list[tuple[list[str], bytes]]:
    """Pictures of text: a quarter each of receipts, timetables, signs and chats; every other one on a busy
    background, every fifth turned by a few degrees."""
    rng = random.Random(seed)
    pictures = []
    for i in range(count):
        lines = lines_for(KINDS[i % len(KINDS)], rng)
        angle = rng.choice([-4.0, -2.5, 2.5, 4.0]) if i % 5 == 4 else 0.0
        pictures.append((lines, jpeg_of(draw(lines, rng, busy=i % 2 == 1, angle=angle))))
    return pictures


def measure_ocr(pictures: list[tuple[list[str], bytes]], reader: ocr.OcrReader) -> dict:
    import io

    from PIL import Image

    errors = chars = 0
    read_texts, seconds = [], []
    for lines, data in pictures:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        started = time.perf_counter()
        found = reader.read(image)
        seconds.append(time.perf_counter() - started)
        expected, got = _folded("".join(lines)), _folded("".join(line.text for line in found))
        errors += _edit_distance(expected, got)
        chars += len(expected)
        read_texts.append("\n".join(line.text for line in found))
    return {
        "accuracy": 1 - errors / chars,
        "chars": chars,
        "rate": len(pictures) / sum(seconds),
        "texts": read_texts,
        "strings": sum(len(lines) for lines, _ in pictures),
    }


def ocr_recall(pictures: list[tuple[list[str], bytes]], texts: list[str], work: Path) -> tuple[float, int]:
    """Each picture's rarest word (space-separated piece of its strings) that OCR read correctly, searched by
    keyword among all the pictures' OCR text: is the picture in the top 10?"""
    store = MetadataStore(f"sqlite:///{work / 'ocr-recall.db'}")
    try:
        store.create_collection("ocr", "RN50", 4, "IP")
        rows = [NewImage(f"p{i}", b"x", "image/jpeg", 1, 1, f"{i:064d}") for i in range(len(pictures))]
        ids = store.insert_pending("ocr", rows)
        store.mark_indexed(list(ids.values()))
        store_texts = TextStore(store.engine)
        store_texts.set_fields("ocr", {ids[f"p{i}"]: {"ocr": text} for i, text in enumerate(texts)})
        services = SimpleNamespace(texts=store_texts, vectors=None)
        frequency: dict[str, int] = {}
        for lines, _ in pictures:
            for word in {w for line in lines for w in line.split()}:
                frequency[word] = frequency.get(word, 0) + 1
        found = asked = 0
        for i, (lines, _) in enumerate(pictures):
            readable = [w for line in lines for w in line.split() if _folded(w) in _folded(texts[i]) and len(w) >= 2]
            if not readable:
                continue
            word = min(readable, key=lambda w: (frequency[w], w))
            asked += 1
            top = [hit.id for hit in keyword.ranked(services, "ocr", word, limit=10)]
            found += ids[f"p{i}"] in top
        return found / max(asked, 1), asked
    finally:
        store.close()


def caption_recall(work: Path, count: int = 2000, queries: int = 200) -> tuple[float, float]:
    """A Flickr30k-CN-format split with captions (the sample generator's), its captions read as a load reads them,
    and words cut from those captions searched by keyword: mean recall and precision against a plain scan."""
    from operations.ingest.flickr_format import read_words
    from operations.ingest.sample_data import generate_split

    generate_split(work / "captions", "valid", count, seed=4)
    words = read_words(work / "captions", "valid")
    store = MetadataStore(f"sqlite:///{work / 'captions.db'}")
    try:
        store.create_collection("cap", "RN50", 4, "IP")
        ids = store.insert_pending(
            "cap", [NewImage(k, b"x", "image/jpeg", 1, 1, f"{i:064d}") for i, k in enumerate(words)]
        )
        store.mark_indexed(list(ids.values()))
        TextStore(store.engine).set_fields("cap", {ids[k]: v for k, v in words.items()})
        services = SimpleNamespace(texts=TextStore(store.engine), vectors=None)
        rng = random.Random(9)
        recalls, precisions = [], []
        for _ in range(queries):
            caption = rng.choice([v["caption"] for v in words.values()]).split("\n")[0]
            start = rng.randrange(max(1, len(caption) - 2))
            word = caption[start : start + rng.randint(2, 4)]
            expected = {ids[k] for k, v in words.items() if word in v["caption"]}
            got = {hit.id for hit in keyword.ranked(services, "cap", word)}
            recalls.append(len(got & expected) / len(expected))
            precisions.append(len(got & expected) / max(len(got), 1))
        return statistics.mean(recalls), statistics.mean(precisions)
    finally:
        store.close()


def corpus(rows: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Flickr30k-CN-like captions (two per image) from a Zipf-distributed vocabulary of 3,000 Chinese words, and
    the distinct words that occur (queries are drawn from these)."""
    rng = random.Random(seed)
    vocabulary = sorted({"".join(rng.choice(COMMON) for _ in range(rng.choice((2, 2, 2, 3, 4)))) for _ in range(3200)})
    vocabulary = vocabulary[:3000]
    weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocabulary))]
    rng.shuffle(vocabulary)
    captions = []
    for _ in range(rows):
        two = ["".join(rng.choices(vocabulary, weights, k=rng.randint(6, 11))) for _ in range(2)]
        captions.append("\n".join(two))
    return captions, vocabulary


def fill(store: MetadataStore, collection: str, captions: list[str]) -> dict[str, int]:
    store.create_collection(collection, "RN50", 1024, "IP")
    ids: dict[str, int] = {}
    for start in range(0, len(captions), 5000):
        rows = [
            NewImage(f"i{i}", b"x", "image/jpeg", 1, 1, f"{i:064d}", f"IMG_{i:06d}.jpg")
            for i in range(start, min(start + 5000, len(captions)))
        ]
        part = store.insert_pending(collection, rows)
        store.mark_indexed(list(part.values()))
        TextStore(store.engine).set_fields(
            collection, {part[f"i{i}"]: {"caption": captions[i]} for i in range(start, start + len(rows))}
        )
        ids.update(part)
    return ids


def keyword_latency(url: str, captions: list[str], vocabulary: list[str], queries: int = 200) -> dict:
    store = MetadataStore(url)
    try:
        started = time.perf_counter()
        fill(store, "kw", captions)
        filled = time.perf_counter() - started
        services = SimpleNamespace(texts=TextStore(store.engine), vectors=None)
        rng = random.Random(11)
        asked = rng.sample(vocabulary, queries)
        times, matches = [], []
        for word in asked:  # as keyword mode asks: the best 10, with their rows
            began = time.perf_counter()
            found = keyword.ranked(services, "kw", word, limit=10)
            hits_for(store, "kw", [(h.id, h.score) for h in found], False)
            times.append((time.perf_counter() - began) * 1000)
            matches.append(len(keyword.ranked(services, "kw", word)))
        brute = sum(1 for caption in captions if asked[0] in caption)  # a spot check against a plain scan
        return {
            "p50": statistics.median(times),
            "p95": float(np.percentile(times, 95)),
            "fill_s": filled,
            "median_matches": statistics.median(matches),
            "max_matches": max(matches),
            "spot_check": brute == matches[0],
        }
    finally:
        store.close()


def query_sets(captions: list[str], vocabulary: list[str], count: int) -> dict[str, list[str]]:
    """The queries people type, and the worst cases for the keyword list: words drawn from the vocabulary, common
    words (each in at least 10% of the captions: their lists are long) and caption-like sentences (a caption's
    line: one long term of many grams)."""
    rng = random.Random(5)
    sample = captions[:3000]
    common = [w for w in vocabulary if sum(w in c for c in sample) >= 0.10 * len(sample)]
    sentences = [rng.choice(captions).split("\n")[rng.randrange(2)] for _ in range(count)]
    return {
        "words": rng.sample(vocabulary, count),
        "common words": [common[i % len(common)] for i in range(count)],
        "sentences": sentences,
    }


def hybrid_vs_semantic(work: Path, url: str | None, captions: list[str], sets: dict[str, list[str]]) -> dict:
    """p50 ms of semantic and hybrid search (interleaved, same queries) per query set, with the keyword list's own
    p50, on one metadata backend (None: SQLite) and Milvus Lite."""
    name = f"hybrid-{len(captions)}-{'mysql' if url else 'sqlite'}"
    extra = {"metadata_url": url} if url else {}
    settings = Settings(_env_file=None, data_dir=work / name, data_root=work, weights="random", **extra)
    services = build_services(settings)
    try:
        services.encoder.load()
        ids = fill(services.metadata, "hy", captions)
        services.vectors.ensure_collection("hy", 1024)
        rng = np.random.default_rng(3)
        ordered = sorted(ids.values())
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start : start + 5000]
            vectors = rng.normal(size=(len(chunk), 1024)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            services.vectors.upsert("hy", chunk, vectors)
        services.vectors.flush("hy")
        for word in sets["words"][:10]:  # warm-up
            hybrid.search(services, "hy", 10, "hybrid", text=word)
        found = {}
        for kind, queries in sets.items():
            times: dict[str, list[float]] = {"semantic": [], "hybrid": [], "keyword_search": []}
            for query in queries:
                for mode in ("semantic", "hybrid"):  # interleaved: the machine's noise hits both alike
                    services.encoder.forget_queries()  # both encode the query, as a new one typed is
                    began = time.perf_counter()
                    outcome = hybrid.search(services, "hy", 10, mode, text=query)
                    times[mode].append((time.perf_counter() - began) * 1000)
                times["keyword_search"].append(outcome.result.timings_ms["keyword_search"])
            found[kind] = {part: statistics.median(values) for part, values in times.items()}
            found[kind]["ratio"] = found[kind]["hybrid"] / found[kind]["semantic"]
        return found
    finally:
        services.close()
        if url:
            drop_database(url.rsplit("/", 1)[1])


def ingest_rates(work: Path, pictures: list[tuple[list[str], bytes]]) -> dict[str, float]:
    folder = work / "pictures"
    folder.mkdir()
    for i, (_, data) in enumerate(pictures):
        (folder / f"text{i:03d}.jpg").write_bytes(data)
    rates = {}
    for mode in ("off", "on"):
        settings = Settings(
            _env_file=None, data_dir=work / f"ingest-{mode}", data_root=work, weights="random", ocr=mode
        )
        services = build_services(settings)
        try:
            services.encoder.load()
            progress = JobProgress()
            started = time.perf_counter()
            ingest_job.run(services, "texts", FileSource.open(folder), progress)
            rates[mode] = progress.loaded / (time.perf_counter() - started)
        finally:
            services.close()
    return rates


def encoder_rate(pictures: list[tuple[list[str], bytes]]) -> float:
    from adapters import images

    settings = Settings(_env_file=None, weights="random")
    services = build_services(settings)
    try:
        encoder = services.encoder
        encoder.load()
        pixels = [encoder.preprocess(images.decode_rgb(data, 10**9)) for _, data in pictures]
        started = time.perf_counter()
        for start in range(0, len(pixels), 16):
            encoder.encode_pixels(pixels[start : start + 16])
        return len(pixels) / (time.perf_counter() - started)
    finally:
        services.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pictures", type=int, default=200)
    parser.add_argument("--keyword-rows", type=int, default=100_000)
    parser.add_argument("--hybrid-rows", type=int, nargs="+", default=[30_000, 100_000])
    parser.add_argument("--hybrid-queries", type=int, default=150)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="words-bench-"))
    pictures = rendered_set(args.pictures)
    reader = ocr.OcrReader()
    reader.load()
    read = measure_ocr(pictures, reader)
    recall, asked = ocr_recall(pictures, read["texts"], work)
    print(
        f"OCR: accuracy {read['accuracy']:.4f}, {read['rate']:.2f} img/s; recall@10 {recall:.3f} ({asked})", flush=True
    )
    caption_r, caption_p = caption_recall(work)
    print(f"captions: recall {caption_r:.4f} precision {caption_p:.4f}", flush=True)
    encoding = encoder_rate(pictures[:64])
    ingest = ingest_rates(work, pictures[:48])
    print(f"encoder {encoding:.1f} img/s; ingest {ingest}", flush=True)
    captions, vocabulary = corpus(max(args.keyword_rows, *args.hybrid_rows))
    sqlite = keyword_latency(f"sqlite:///{work / 'keyword.db'}", captions[: args.keyword_rows], vocabulary)
    print(f"keyword SQLite {sqlite}", flush=True)
    database = f"imgsearch_words_bench_{os.getpid()}"
    try:
        mysql = keyword_latency(
            f"mysql+pymysql://root@127.0.0.1:3306/{database}", captions[: args.keyword_rows], vocabulary
        )
    finally:
        drop_database(database)
    print(f"keyword MariaDB {mysql}", flush=True)
    sets = query_sets(captions, vocabulary, args.hybrid_queries)
    hybrid_runs = {}
    for rows in args.hybrid_rows:
        for backend in ("SQLite", "MariaDB"):
            url = (
                f"mysql+pymysql://root@127.0.0.1:3306/imgsearch_words_hybrid_{os.getpid()}"
                if backend != "SQLite"
                else None
            )
            hybrid_runs[(rows, backend)] = hybrid_vs_semantic(work, url, captions[:rows], sets)
            print(f"hybrid {rows} {backend} {hybrid_runs[(rows, backend)]}", flush=True)

    def hybrid_floor(rows: int) -> float:
        return FLOORS["hybrid_ratio"] if rows <= 30_000 else FLOORS["hybrid_ratio_100k"]

    hybrid_ok = all(
        run[kind]["ratio"] <= hybrid_floor(rows)
        for (rows, _), run in hybrid_runs.items()
        for kind in ("common words", "sentences")
    )
    checks = [
        ("OCR character accuracy ≥ 0.90 on the rendered set", read["accuracy"] >= FLOORS["ocr_accuracy"]),
        ("keyword recall@10 ≥ 0.95 for words OCR read correctly", recall >= FLOORS["ocr_recall"]),
        (
            f"keyword search over {args.keyword_rows:,} images p50 ≤ 20 ms, SQLite and MariaDB",
            max(sqlite["p50"], mysql["p50"]) <= FLOORS["keyword_p50_ms"],
        ),
        (
            "hybrid p50 ≤ 1.3x semantic at 30,000 images and ≤ 1.5x at 100,000, for common words and sentences, "
            "SQLite and MariaDB",
            hybrid_ok,
        ),
        (
            "keyword results equal a plain substring scan (captions; spot check at 100k)",
            caption_r == caption_p == 1.0 and sqlite["spot_check"] and mysql["spot_check"],
        ),
    ]
    hybrid_rows = [
        f"| {rows:,} | {backend} | {kind} | {run[kind]['semantic']:.1f} | {run[kind]['hybrid']:.1f} | "
        f"{run[kind]['keyword_search']:.1f} | **{run[kind]['ratio']:.2f}x** |"
        for (rows, backend), run in hybrid_runs.items()
        for kind in sets
    ]
    table = "\n".join(
        [
            "## words: OCR, keyword and hybrid search (bench/words.py)",
            "",
            f"{run_header()} · {args.pictures} rendered pictures ({read['strings']} strings, {read['chars']:,} "
            "characters; receipts, timetables, signs, chats; half on busy backgrounds, a fifth turned 2.5–4°) · "
            "PP-OCRv4 (rapidocr-onnxruntime) · RN50 random weights on ONNX Runtime",
            "",
            "| measured | value |",
            "|---|---|",
            f"| OCR character accuracy (1 − edit distance / characters) | {read['accuracy']:.4f} |",
            f"| keyword recall@10, each picture's rarest word OCR read correctly ({asked} pictures) | {recall:.3f} |",
            f"| keyword recall / precision of caption words, 2,000-image Flickr30k-CN-format split, 200 words | "
            f"{caption_r:.4f} / {caption_p:.4f} |",
            f"| OCR, images/s (one reader, all cores) | {read['rate']:.2f} |",
            f"| encoder alone on the same pictures, images/s (batch 16) | {encoding:.1f} |",
            f"| folder ingest of 48 of them, OCR off / on, images/s | {ingest['off']:.1f} / {ingest['on']:.2f} |",
            f"| keyword search, {args.keyword_rows:,} images with two captions each, SQLite p50 / p95 | "
            f"{sqlite['p50']:.1f} / {sqlite['p95']:.1f} ms |",
            f"| the same on MariaDB p50 / p95 | {mysql['p50']:.1f} / {mysql['p95']:.1f} ms |",
            f"| matches per query word, median / most | {sqlite['median_matches']:.0f} / {sqlite['max_matches']:,} |",
            f"| indexing {args.keyword_rows:,} images' captions, SQLite / MariaDB | {sqlite['fill_s']:.0f} s / "
            f"{mysql['fill_s']:.0f} s |",
            "",
            f"Hybrid against semantic search in the same process (Milvus Lite, RN50 random weights on ONNX Runtime; "
            f"{args.hybrid_queries} queries per set, the two modes interleaved; p50 ms). The keyword list is read "
            "beside the query's encoding and vector search; its own p50 is in its column. Common words are each in "
            f"≥ 10% of the captions ({len(set(sets['common words']))} such words); sentences are caption lines.",
            "",
            "| images | metadata DB | queries | semantic | hybrid | keyword list | hybrid / semantic |",
            "|---|---|---|---|---|---|---|",
            *hybrid_rows,
            "",
            "| floor | result |",
            "|---|---|",
            *(f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in checks),
        ]
    )
    print(table)
    write_section("words", table)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
