"""Subcommands of the deploy workflow (mk/deploy.mk): env-check, info, confirm-purge, chromium."""

from __future__ import annotations

import argparse


def _env_check(args: argparse.Namespace) -> None:
    from .environments import check_environment

    check_environment(args.env)


def _info(args: argparse.Namespace) -> None:
    from .environments import check_environment, read_connection, render_info

    env = check_environment(args.env)
    print(render_info(env.name, read_connection(env)))


def _confirm_purge(args: argparse.Namespace) -> None:
    from .docker_env import docker_env, purge_plan, read_settings
    from .environments import check_environment, confirm_purge

    env = check_environment(args.env)
    if read_settings(env).get("mlops_target") != "docker":
        confirm_purge(env)
        return
    deleted, kept = purge_plan(docker_env(env))
    confirm_purge(env, deleted, kept)


def _chromium(_args: argparse.Namespace) -> None:
    from .chromium import ensure_chromium

    print(ensure_chromium())


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the deploy workflow's subcommands; each sets `func`."""
    for name, func, text in (
        ("env-check", _env_check, "fail unless deploy/ENV/ holds inventory.yml and settings.yml"),
        ("info", _info, "print build/ENV/connection.env with secrets masked"),
        ("confirm-purge", _confirm_purge, "ask before `make destroy PURGE=1` (YES=1 skips)"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("env", help="environment name (deploy/ENV/)")
        parser.set_defaults(func=func)
    chromium = sub.add_parser("chromium", help="print Chromium's path, installing it if need be")
    chromium.set_defaults(func=_chromium)
