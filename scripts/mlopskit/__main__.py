"""Command line of the repository's tooling: python -m mlopskit COMMAND (see `make help`)."""

from __future__ import annotations

import argparse
import sys

from .docker_cli import add_commands as add_docker_commands
from .shell import CommandError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlopskit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="build the service images")
    images.add_argument("names", nargs="*", help="postgres, sftp, mlflow (default: all)")
    sub.add_parser("engine", help="make sure a Docker engine answers")
    sub.add_parser("image-refs", help="print NAME=REFERENCE for each image")
    lock = sub.add_parser("lock", help="re-resolve the requirements lock files")
    lock.add_argument("which", nargs="*", choices=["dev", "mlflow"], help="default: both")
    add_docker_commands(sub)
    args = parser.parse_args(argv)
    try:
        if func := getattr(args, "func", None):
            func(args)
        elif args.command == "images":
            from .build import build_all
            from .versions import IMAGE_NAMES

            unknown = set(args.names) - set(IMAGE_NAMES)
            if unknown:
                parser.error(f"unknown image(s) {sorted(unknown)}; choose from {IMAGE_NAMES}")
            build_all(tuple(args.names) or IMAGE_NAMES)
        elif args.command == "engine":
            from .engine import ensure_engine

            ensure_engine()
        elif args.command == "lock":
            from .lock import lock_all

            lock_all(args.which or ["dev", "mlflow"])
        elif args.command == "image-refs":
            from .versions import IMAGE_NAMES, image_set

            images = image_set()
            for name in IMAGE_NAMES:
                print(f"{name}={images.ref(name)}")
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
