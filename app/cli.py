"""``imgsearch`` command: serve the API, generate sample data, and run bulk work with a progress bar
(ingest a folder or zip, load a Flickr30k-CN split, reconcile, search)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from app.cli_collections import add_commands as add_collection_commands
from app.cli_common import out as _out
from app.cli_common import run_job as _run_job
from app.cli_common import services_for as _services
from app.cli_common import stores_for as _configured_stores
from app.cli_keys import add_commands as add_key_commands
from app.cli_reembed import add_commands as add_reembed_commands
from app.cli_sources import add_commands as add_source_commands
from app.logging_setup import configure_logging
from config import Settings

logger = logging.getLogger(__name__)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections import collections
    from operations.ingest import ingest_job
    from operations.ingest.file_sources import FileSource

    collections.validate_name(args.collection)
    source = FileSource.open(Path(args.path))
    with _services(settings) as services:
        return _run_job(
            services,
            "ingest",
            args.collection,
            {"path": str(Path(args.path).resolve()), "via": "cli"},
            lambda progress: ingest_job.run(services, args.collection, source, progress, args.model),
        )


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from operations.ingest import load

    directory = Path(args.path).resolve()
    with _services(settings) as services:
        plan = load.plan_directory(args.collection, directory, args.split, model=args.model)
        return _run_job(
            services,
            "load",
            args.collection,
            {"path": str(directory), "split": args.split, "via": "cli"},
            lambda progress: load.run(services, plan, progress),
        )


def _tag(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections import collections
    from operations.labels import tags

    labels = [line.strip() for line in Path(args.labels_file).read_text("utf-8").splitlines() if line.strip()]
    labels += [label for label in args.label or [] if label.strip()]
    rule = tags.validate_rule(args.top_n, args.min_probability, len(labels))
    with _services(settings) as services:
        collections.require(services, args.collection)
        params = {"labels": labels, "top_n": args.top_n, "min_probability": args.min_probability, "via": "cli"}
        return _run_job(
            services,
            "tags",
            args.collection,
            params,
            lambda progress: tags.tag_collection(services, args.collection, labels, rule, progress, args.prompts),
        )


def _collection_job(settings: Settings, kind: str, collection: str, params: dict) -> int:
    """A job of the queue's kinds (operations/jobs/job_kinds.py), run here in the foreground."""
    from operations.collections import collections
    from operations.jobs.job_kinds import build_job

    with _services(settings) as services:
        collections.require(services, collection)
        params = {"collection": collection, **params}
        return _run_job(services, kind, collection, {**params, "via": "cli"}, build_job(services, kind, params))


def _ocr(args: argparse.Namespace, settings: Settings) -> int:
    return _collection_job(settings, "ocr", args.collection, {"redo": args.redo})


def _faces(args: argparse.Namespace, settings: Settings) -> int:
    return _collection_job(settings, "faces", args.collection, {"redo": args.redo})


def _people(args: argparse.Namespace, settings: Settings) -> int:
    return _collection_job(settings, "people", args.collection, {"all": args.all})


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections import collections, reconcile

    with _services(settings) as services:
        collections.require(services, args.collection)
        return _run_job(
            services,
            "reconcile",
            args.collection,
            {"collection": args.collection, "via": "cli"},
            lambda progress: reconcile.run_job(services, args.collection, progress),
        )


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.file_names import readable
    from operations.search import search
    from operations.search.results_picture import RANDOM_NOTE, PictureHit, render

    if bool(args.text) == bool(args.image):
        raise SystemExit("error: give a TEXT or --image FILE (one of them)")
    with _services(settings) as services:
        if args.image:
            query = Path(args.image).read_bytes()
            result = search.search_images(services, args.collection, [(args.image, query)], args.top_k, True)[0]
            title, query_image = f"以图搜图: {Path(args.image).name}", query
        else:
            result = search.search_text(services, args.collection, args.text, args.top_k, True)
            title, query_image = f"以文搜图: {args.text}", None
        for rank, hit in enumerate(result.hits, start=1):
            _out(f"{rank:>3}  {hit.score:.4f}  {hit.image.image_id}  {readable(hit.image.source or '')}")
        if args.plot:
            hits = [PictureHit(h.image.data or b"", h.score, h.image.image_id) for h in result.hits]
            font = str(settings.font_path) if settings.font_path else None
            note = RANDOM_NOTE if services.encoder.info.weights == "random" else None
            picture = render(title, hits, query_image, 5, font, settings.max_image_pixels, note)
            Path(args.plot).write_bytes(picture)
            _out(f"picture written to {args.plot}")
    return 0


def _extract(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from operations.ingest.extract import extract
    from operations.services import build_encoder

    encoder = build_encoder(settings, model_name=args.model)
    try:
        with tqdm(desc=f"extract {args.split}", unit="item", dynamic_ncols=True) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            report = extract(
                encoder,
                Path(args.path),
                args.split,
                args.batch_size,
                settings.decode_workers,
                settings.max_image_pixels,
                progress,
            )
    finally:
        encoder.close()
    for problem in report.failed[:100]:
        _out(f"  skipped {problem}")
    _out(f"wrote features of {report.images} images and {report.texts} texts in {args.path}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from operations.evaluation.evaluation import evaluate

    with _services(settings) as services:
        report = evaluate(services, args.collection, Path(args.path), args.split, args.text_features)
    _out(f"{report.texts} texts, {report.images} images; predictions in {report.predictions}")
    _out("direction      R@1     R@5     R@10    mean recall")
    for name, r in (("text→image", report.text_to_image), ("image→text", report.image_to_text)):
        _out(f"{name:<12} {r.r1:7.2f} {r.r5:7.2f} {r.r10:7.2f} {r.mean_recall:9.2f}")
    return 0


def _export_onnx(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.encoders.encoder_base import ARCHITECTURES
    from adapters.encoders.torchvision_encoder import TORCHVISION_MODELS
    from adapters.stores.sql.metadata_store import MetadataStore
    from operations.models.export_onnx import export
    from operations.services import build_encoder

    names = args.model
    if not names:  # the service's model and every Chinese-CLIP model a collection is bound to
        metadata = MetadataStore(str(settings.metadata_url))
        try:
            exportable = {*ARCHITECTURES, *TORCHVISION_MODELS}
            bound = {c.model for c in metadata.list_collections() if c.model in exportable}
        finally:
            metadata.close()
        names = sorted({settings.model_name, *bound})
    out = Path(args.out) if args.out else Path(str(settings.onnx_dir))
    for name in names:
        encoder = build_encoder(settings, model_name=name, backend="torch")
        try:
            _out(f"exported {name} to {export(encoder, out)}")
        finally:
            encoder.close()
    _out("the service serves them on ONNX Runtime (IMGSEARCH_BACKEND=auto, the default, or onnx)")
    return 0


def _warmup(args: argparse.Namespace, settings: Settings) -> int:
    """Load each configured model once and exit: with the default backend (auto) this makes any missing ONNX
    export, so a serving image without torch finds it (docker-compose runs this before the service)."""
    from operations.services import build_encoder

    for name in dict.fromkeys([settings.model_name, *settings.preload_models, *(args.model or [])]):
        encoder = build_encoder(settings, model_name=name)
        try:
            info = encoder.load()
        finally:
            encoder.close()
        _out(f"{name}: {info.backend} ({info.precision}), {info.weights} weights — {info.note or info.source}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.main import create_app
    from operations.services import build_encoder

    workers = args.workers or settings.workers
    if workers > 1 and (reasons := settings.single_process_stores()):
        raise SystemExit(
            f"error: --workers {workers} needs stores that several processes can share, and "
            + "; and ".join(reasons)
            + ". Or run one process (--workers 1)."
        )
    # The model is loaded before the server starts: a missing checkpoint is one clear sentence (main() prints it),
    # not a traceback from inside uvicorn, and a first-use ONNX export happens once, not once per worker.
    encoder = build_encoder(settings)
    encoder.load()
    # log_config=None: uvicorn's loggers use ours (request ids, JSON); the service writes its own access log line.
    options: dict = {"log_level": settings.log_level.lower(), "log_config": None, "access_log": False}
    if workers > 1:  # each process builds its own app from the same environment; the stores are shared
        encoder.close()
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings, encoder=encoder), host=args.host, port=args.port, **options)
    return 0


def _sample(args: argparse.Namespace, settings: Settings) -> int:
    from operations.ingest.sample_data import generate_split
    from operations.services import build_encoder

    encoder = None if args.no_features else build_encoder(settings)
    out = Path(args.out) if args.out else Path(str(settings.data_root)) / "sample"
    try:
        report = generate_split(out, args.split, args.count, encoder=encoder, seed=args.seed)
    finally:
        if encoder is not None:
            encoder.close()
    logger.info("wrote %s", report)
    return 0


@contextlib.contextmanager
def _progress_bar(desc: str) -> Iterator:
    """A tqdm bar shown from the first report of progress (so a refusal prints no empty bar)."""
    from tqdm import tqdm

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=desc, total=total, unit="img", dynamic_ncols=True))
        bar = bars[0]
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def _copy(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from operations.collections.copy_collection import (
        copy_collection,
        open_stores,
        refuse_same_stores,
        source_collection,
    )

    token = args.to_milvus_token or os.environ.get("IMGSEARCH_TO_MILVUS_TOKEN") or None
    with _configured_stores(settings) as source:
        refuse_same_stores(source, args.to_metadata, args.to_milvus, args.to_milvus_db)
        source_collection(source, args.collection)  # before the destination is opened (and created)
        destination = open_stores(args.to_metadata, args.to_milvus, args.to_milvus_db, token)
        try:
            with _progress_bar(f"copy {args.collection}") as progress:
                report = copy_collection(source, destination, args.collection, args.batch_size, progress)
        finally:
            destination.close()
    _out(report.summary())
    return 1 if report.without_vector else 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from operations.collections.export_collection import export_collection

    with _configured_stores(settings) as stores, _progress_bar(f"export {args.collection}") as progress:
        report = export_collection(stores, args.collection, Path(args.path), args.split, progress=progress)
    for warning in report.warnings():
        _out(f"  warning: {warning}")
    _out(report.summary())
    _out(f"restore with: imgsearch load {args.path} --split {args.split} --collection NAME --model {report.model}")
    return 1 if report.without_vector else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearch", description="Chinese text-to-image search service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (Swagger UI at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        help="service processes (default: IMGSEARCH_WORKERS); >1 needs a Milvus server and MySQL",
    )
    serve.set_defaults(handler=_serve)

    ingest = commands.add_parser("ingest", help="add every image of a folder (recursive) or a .zip")
    ingest.add_argument("path", help="folder or .zip")
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("--model", help="model for a new collection (default: IMGSEARCH_MODEL_NAME)")
    ingest.set_defaults(handler=_ingest)

    add_collection_commands(commands)
    add_source_commands(commands)
    add_reembed_commands(commands)
    add_key_commands(commands)

    load = commands.add_parser("load", help="bulk-load a Flickr30k-CN-format split ({split}_imgs.tsv …)")
    load.add_argument("path", help="folder holding the split's files")
    load.add_argument("--split", default="valid")
    load.add_argument("--collection", required=True)
    load.add_argument("--model", help="model for a new collection (default: IMGSEARCH_MODEL_NAME)")
    load.set_defaults(handler=_load)

    tag = commands.add_parser("tag", help="tag every image of a collection from a label set (zero-shot)")
    tag.add_argument("--collection", required=True)
    tag.add_argument("--labels-file", default="/dev/null", help="a label per line (UTF-8)")
    tag.add_argument("--label", action="append", help="a label (repeatable), besides --labels-file")
    tag.add_argument("--top-n", type=int, default=3, help="keep each image's n most probable labels (default 3)")
    tag.add_argument("--min-probability", type=float, help="keep labels at or above this probability")
    tag.add_argument("--prompts", default="photo", help="photo (default), imagenet or none")
    tag.set_defaults(handler=_tag)

    read = commands.add_parser("ocr", help="read the text in every image of a collection (Chinese OCR)")
    read.add_argument("--collection", required=True)
    read.add_argument("--redo", action="store_true", help="read images that were read before again")
    read.set_defaults(handler=_ocr)

    found = commands.add_parser("faces", help="find the faces in every photo of a collection and group them")
    found.add_argument("--collection", required=True)
    found.add_argument("--redo", action="store_true", help="read photos that were read before again")
    found.set_defaults(handler=_faces)

    group = commands.add_parser("people", help="group a collection's faces into persons (what users did stays)")
    group.add_argument("--collection", required=True)
    group.add_argument("--all", action="store_true", help="forget the machine's grouping and start over")
    group.set_defaults(handler=_people)

    reconcile = commands.add_parser("reconcile", help="find and repair mismatches between Milvus and the DB")
    reconcile.add_argument("--collection", required=True)
    reconcile.set_defaults(handler=_reconcile)

    search = commands.add_parser("search", help="search by Chinese text or by an image")
    search.add_argument("text", nargs="?", help="the query text")
    search.add_argument("--image", help="query image file instead of text")
    search.add_argument("--collection", required=True)
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--plot", help="write a picture of the results (PNG) here")
    search.set_defaults(handler=_search)

    export = commands.add_parser("export-onnx", help="export Chinese-CLIP, ResNet50 and VGG16 to ONNX (dynamic batch)")
    export.add_argument("--out", help="folder for <model>/ (default: IMGSEARCH_ONNX_DIR)")
    export.add_argument(
        "--model",
        action="append",
        help="model to export (repeatable); default: the service's model and every "
        "Chinese-CLIP, ResNet50 or VGG16 model a collection uses",
    )
    export.set_defaults(handler=_export_onnx)

    warmup = commands.add_parser(
        "warmup", help="load the configured models once and exit (backend auto: makes missing ONNX exports)"
    )
    warmup.add_argument("--model", action="append", help="another model to prepare (repeatable)")
    warmup.set_defaults(handler=_warmup)

    extract = commands.add_parser("extract", help="write Chinese-CLIP feature files for a split (CPU or GPU)")
    extract.add_argument("path", help="folder holding {split}_imgs.tsv and/or {split}_texts.jsonl")
    extract.add_argument("--split", default="valid")
    extract.add_argument("--model", help="default: IMGSEARCH_MODEL_NAME")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.set_defaults(handler=_extract)

    evaluate = commands.add_parser("evaluate", help="recall@1/5/10 of a loaded split, as Chinese-CLIP computes it")
    evaluate.add_argument("path", help="folder holding {split}_texts.jsonl (predictions are written there)")
    evaluate.add_argument("--split", default="valid")
    evaluate.add_argument("--collection", required=True)
    evaluate.add_argument("--text-features", action="store_true", help="use {split}_texts.txt_feat.jsonl")
    evaluate.set_defaults(handler=_evaluate)

    sample = commands.add_parser("sample", help="generate a synthetic Flickr30k-CN-format split")
    sample.add_argument("--out", help="folder to write (default: <data root>/sample)")
    sample.add_argument("--split", default="valid")
    sample.add_argument("--count", type=int, default=1000, help="number of images")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-features", action="store_true", help="skip the feature files (no model needed)")
    sample.set_defaults(handler=_sample)

    copy = commands.add_parser(
        "copy", help="copy a collection (bytes, ids, vectors; no re-encoding) to other stores, e.g. a server + MySQL"
    )
    copy.add_argument("--collection", required=True)
    copy.add_argument("--to-milvus", required=True, help="destination Milvus: http://host:19530 or a Lite *.db file")
    copy.add_argument("--to-metadata", required=True, help="destination SQLAlchemy URL, e.g. mysql+pymysql://…")
    copy.add_argument("--to-milvus-db", default="default", help="database on the destination Milvus server")
    copy.add_argument(
        "--to-milvus-token",
        help="destination Milvus credentials (default: $IMGSEARCH_TO_MILVUS_TOKEN)",
    )
    copy.add_argument("--batch-size", type=int, default=500, help="rows per page and per write batch")
    copy.set_defaults(handler=_copy)

    export_collection = commands.add_parser(
        "export", help="write a collection as {split}_imgs.tsv + {split}_imgs.img_feat.jsonl (a backup load restores)"
    )
    export_collection.add_argument("path", help="folder to write (created if missing)")
    export_collection.add_argument("--collection", required=True)
    export_collection.add_argument("--split", default="valid", help="file name prefix (default: valid)")
    export_collection.set_defaults(handler=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    from adapters.encoders.encoder_base import ModelLoadError
    from operations.errors import AppError

    try:
        return int(args.handler(args, settings))
    except AppError as exc:
        raise SystemExit(f"error: {exc.message}") from exc
    except ModelLoadError as exc:  # the sentence that says what to do; the traceback only for those who ask
        logger.debug("model load failed", exc_info=True)
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
