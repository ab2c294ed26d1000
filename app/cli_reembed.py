"""``imgsearch reembed``: re-encode a collection with another model (a progress bar; resumable), then switch,
roll back or finalize, as the routes under ``/collections/{name}/reembed`` do."""

from __future__ import annotations

import argparse

from config import Settings


def _reembed(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli_common import out as _out
    from app.cli_common import run_job as _run_job
    from app.cli_common import services_for as _services
    from operations.collections import reembed

    with _services(settings) as services:
        if args.action != "run":
            change = {"switch": reembed.switch, "rollback": reembed.rollback, "finalize": reembed.finalize}
            record = change[args.action](services, args.collection)
            other = f"; {record.next_model} vectors {record.next_state}" if record.next_state else ""
            _out(f"{args.collection}: searches with {record.model}{other}")
            return 0
        if not args.model:
            raise SystemExit("error: --model is needed to re-embed")
        params = reembed.start(services, args.collection, args.model, not args.no_switch) | {"via": "cli"}
        return _run_job(
            services,
            "reembed",
            args.collection,
            params,
            lambda progress: reembed.run_job(services, params, progress),
        )


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("reembed", help="re-encode a collection with another model, then switch to it")
    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=["run", "switch", "rollback", "finalize"],
        help="run (default): build the new vectors and switch; or switch / rollback / finalize",
    )
    parser.add_argument("--collection", required=True)
    parser.add_argument("--model", help="the model to re-encode with (run)")
    parser.add_argument("--no-switch", action="store_true", help="build the vectors but keep searching the old ones")
    parser.set_defaults(handler=_reembed)
