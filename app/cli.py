"""``imgsearch`` command: serve the API, generate sample data."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config import Settings

logger = logging.getLogger(__name__)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app.main import create_app

    # One worker: an embedded Milvus Lite file may be opened by one process only.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0


def _sample(args: argparse.Namespace, settings: Settings) -> int:
    from operations.sample_data import generate_split
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgsearch", description="Chinese text-to-image search service")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (Swagger UI at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    sample = commands.add_parser("sample", help="generate a synthetic Flickr30k-CN-format split")
    sample.add_argument("--out", help="folder to write (default: <data root>/sample)")
    sample.add_argument("--split", default="valid")
    sample.add_argument("--count", type=int, default=1000, help="number of images")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-features", action="store_true", help="skip the feature files (no model needed)")
    sample.set_defaults(handler=_sample)

    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return int(args.handler(args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
