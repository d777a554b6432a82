"""The repository's tooling: mlopskit GROUP COMMAND (what the Makefile's targets run).

Installed by `make venv` as .venv/bin/mlopskit; `python -m mlopskit` is the same command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .cluster.cli import add_commands as add_cluster_commands
from .docker_cli import add_people_commands, add_stack_commands
from .shell import CommandError
from .versions import IMAGE_NAMES


def _image_build(args: argparse.Namespace) -> None:
    from .build import build_all

    if unknown := sorted(set(args.names) - set(IMAGE_NAMES)):
        raise CommandError(f"unknown image(s) {unknown}; choose from {', '.join(IMAGE_NAMES)}")
    build_all(tuple(args.names) or IMAGE_NAMES, args.mlflow_version, args.postgresql_major)


def _image_refs(_args: argparse.Namespace) -> None:
    from .versions import image_set

    images = image_set()
    for name in IMAGE_NAMES:
        print(f"{name}={images.ref(name)}")


def add_image_commands(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build", help="build the service images")
    build.add_argument("names", nargs="*", help=f"any of {', '.join(IMAGE_NAMES)} (default: all)")
    build.add_argument(
        "--mlflow-version",
        default=None,
        metavar="X.Y.Z",
        help="build the MLflow image at this release, tagged with it (default: the environment's "
        "MLFLOW_VERSION, else images/versions.env); its requirements are resolved once and cached",
    )
    build.add_argument(
        "--postgresql-major",
        default=None,
        metavar="N",
        help="build the PostgreSQL image at this major, on the Debian release that ships it "
        "(default: the environment's POSTGRESQL_MAJOR, else images/versions.env)",
    )
    build.set_defaults(func=_image_build)
    sub.add_parser("refs", help="print NAME=REFERENCE for each image").set_defaults(
        func=_image_refs
    )


def _contract_generate(args: argparse.Namespace) -> None:
    from .contract import generate

    generate(check=args.check)


def add_contract_commands(sub: argparse._SubParsersAction) -> None:
    generate = sub.add_parser("generate", help="write the files generated from the contract")
    generate.add_argument(
        "--check", action="store_true", help="change nothing; fail if a generated file is stale"
    )
    generate.set_defaults(func=_contract_generate)


def _host_engine(_args: argparse.Namespace) -> None:
    from .engine import ensure_engine

    ensure_engine()


def _host_chromium(_args: argparse.Namespace) -> None:
    from .chromium import ensure_chromium

    print(ensure_chromium())


def _host_tool(args: argparse.Namespace) -> None:
    from .k8s_tools import ToolError, find_tool, tools_dir

    try:
        print(tools_dir() if args.tool == "tools-dir" else find_tool(args.tool))
    except ToolError as exc:
        raise CommandError(str(exc)) from exc


def add_host_commands(sub: argparse._SubParsersAction) -> None:
    for name, func, text in (
        ("engine", _host_engine, "make sure a Docker engine answers (installing one as root)"),
        ("chromium", _host_chromium, "print Chromium's path, installing it if need be"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    for tool, text in (
        ("helm", "print the path of helm 3 (from PATH, else the pinned one)"),
        ("kubectl", "print the path of kubectl (from PATH, else the pinned one)"),
        ("tools-dir", "print a directory with links to both, for PATH"),
    ):
        sub.add_parser(tool, help=text).set_defaults(func=_host_tool, tool=tool)


def _deps_lock(args: argparse.Namespace) -> None:
    from .lock import LOCKS, lock_all

    # Checked here: argparse (3.11) rejects an empty nargs="*" list against `choices`.
    if unknown := sorted(set(args.which) - set(LOCKS)):
        raise CommandError(f"unknown lock(s) {unknown}; choose from {', '.join(LOCKS)}")
    lock_all(args.which or list(LOCKS), args.upgrade)


def add_deps_commands(sub: argparse._SubParsersAction) -> None:
    lock = sub.add_parser(
        "lock", help="resolve the requirements lock files, keeping their pins unless --upgrade"
    )
    lock.add_argument("which", nargs="*", help="dev, mlflow or both (the default)")
    lock.add_argument(
        "--upgrade", action="store_true", help="re-resolve every package, not only new ones"
    )
    lock.set_defaults(func=_deps_lock)


# Each group: its name, one line of help, and what registers its commands (each sets `func`).
GROUPS: tuple[tuple[str, str, Callable[[argparse._SubParsersAction], None]], ...] = (
    ("image", "the service images: build them, print their references", add_image_commands),
    ("stack", "a deployed environment ENV: check, info, backup, restore", add_stack_commands),
    (
        "people",
        "the people of ENV (people.yml): add, remove, rotate",
        add_people_commands,
    ),
    ("contract", "the files generated from images/contract.yaml", add_contract_commands),
    ("cluster", "the throwaway single-node Kubernetes on this machine", add_cluster_commands),
    ("host", "programs the kit needs on this machine: Docker, Chromium, helm", add_host_commands),
    ("deps", "the pinned Python dependencies (requirements lock files)", add_deps_commands),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlopskit", description=__doc__.split("\n")[0])
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for name, text, add_commands in GROUPS:
        group = groups.add_parser(name, help=text, description=text)
        add_commands(group.add_subparsers(dest="command", required=True, metavar="COMMAND"))
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
