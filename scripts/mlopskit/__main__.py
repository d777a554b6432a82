"""Command line of the repository's tooling: python -m mlopskit COMMAND (see `make help`)."""

from __future__ import annotations

import argparse
import sys

from .docker_cli import add_commands as add_docker_commands
from .shell import CommandError
from .versions import IMAGE_NAMES


def _images(args: argparse.Namespace) -> None:
    from .build import build_all

    if unknown := sorted(set(args.names) - set(IMAGE_NAMES)):
        raise CommandError(f"unknown image(s) {unknown}; choose from {', '.join(IMAGE_NAMES)}")
    build_all(tuple(args.names) or IMAGE_NAMES)


def _engine(_args: argparse.Namespace) -> None:
    from .engine import ensure_engine

    ensure_engine()


def _lock(args: argparse.Namespace) -> None:
    from .lock import lock_all

    lock_all(args.which or ["dev", "mlflow"])


def _image_refs(_args: argparse.Namespace) -> None:
    from .versions import image_set

    images = image_set()
    for name in IMAGE_NAMES:
        print(f"{name}={images.ref(name)}")


def _backup(args: argparse.Namespace) -> None:
    from .backup import backup_command

    backup_command(args.env, args.keep)


def _pre_upgrade(args: argparse.Namespace) -> None:
    from .backup import pre_upgrade_command

    pre_upgrade_command(args.env)


def _restore(args: argparse.Namespace) -> None:
    from .restore import restore_command

    restore_command(args.env, args.source)


def _generate(args: argparse.Namespace) -> None:
    from .contract import generate

    generate(check=args.check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlopskit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="build the service images")
    images.add_argument("names", nargs="*", help=f"any of {', '.join(IMAGE_NAMES)} (default: all)")
    images.set_defaults(func=_images)
    sub.add_parser("engine", help="make sure a Docker engine answers").set_defaults(func=_engine)
    refs = sub.add_parser("image-refs", help="print NAME=REFERENCE for each image")
    refs.set_defaults(func=_image_refs)
    lock = sub.add_parser("lock", help="re-resolve the requirements lock files")
    lock.add_argument("which", nargs="*", choices=["dev", "mlflow"], help="default: both")
    lock.set_defaults(func=_lock)
    backup = sub.add_parser("backup", help="back up the databases and SFTP data of ENV")
    backup.add_argument("env")
    backup.add_argument("--keep", default="", help="then keep only the newest N backups")
    backup.set_defaults(func=_backup)
    pre_upgrade = sub.add_parser("pre-upgrade", help="back up ENV before an upgrade (Docker)")
    pre_upgrade.add_argument("env")
    pre_upgrade.set_defaults(func=_pre_upgrade)
    restore = sub.add_parser("restore", help="restore ENV from a backup (default: the latest)")
    restore.add_argument("env")
    restore.add_argument("source", nargs="?", default="", help="a backup directory")
    restore.set_defaults(func=_restore)
    generate = sub.add_parser(
        "generate", help="write the files generated from images/contract.yaml"
    )
    generate.add_argument(
        "--check", action="store_true", help="change nothing; fail if a generated file is stale"
    )
    generate.set_defaults(func=_generate)
    add_docker_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
