"""Subcommands of the deploy workflow (mk/deploy.mk): env-check, info, confirm-purge, chromium."""

from __future__ import annotations

import argparse


def _env_check(args: argparse.Namespace) -> None:
    from .environments import check_environment

    check_environment(args.env)


def _info(args: argparse.Namespace) -> None:
    from .environments import check_environment, read_admin, read_connection, render_info

    env = check_environment(args.env)
    people = {name: read_connection(env, name) for name in env.people_with_connections()}
    print(render_info(env, read_admin(env), people))


def _add_user(args: argparse.Namespace) -> None:
    from .environments import check_environment
    from .people import Person, add_person, read_public_key

    env = check_environment(args.env)
    key = read_public_key(args.pubkey) if args.pubkey else ""
    print(add_person(env, Person(args.name, args.role, args.dvc, key)))


def _remove_user(args: argparse.Namespace) -> None:
    from .environments import check_environment
    from .people import remove_person

    print(remove_person(check_environment(args.env), args.name))


def _rotate_user(args: argparse.Namespace) -> None:
    from .environments import check_environment
    from .people import read_public_key, rotate_person

    env = check_environment(args.env)
    key = read_public_key(args.pubkey) if args.pubkey else ""
    print(rotate_person(env, args.name, key))


def _confirm_purge(args: argparse.Namespace) -> None:
    from .docker_env import docker_env, purge_plan, read_settings
    from .environments import check_environment, confirm_purge

    env = check_environment(args.env)
    if read_settings(env).get("mlops_target") != "docker":
        confirm_purge(env)
        return
    deleted, kept = purge_plan(docker_env(env, deployed=False))
    confirm_purge(env, deleted, kept)


def _chromium(_args: argparse.Namespace) -> None:
    from .chromium import ensure_chromium

    print(ensure_chromium())


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the deploy workflow's subcommands; each sets `func`."""
    for name, func, text in (
        ("env-check", _env_check, "fail unless deploy/ENV/ holds inventory.yml and settings.yml"),
        ("info", _info, "print the connection settings of ENV with secrets masked"),
        ("confirm-purge", _confirm_purge, "ask before `make destroy PURGE=1` (YES=1 skips)"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("env", help="environment name (deploy/ENV/)")
        parser.set_defaults(func=func)
    add = sub.add_parser("add-user", help="add or update a person in deploy/ENV/people.yml")
    add.add_argument("env")
    add.add_argument("name")
    add.add_argument("--role", default="editor", help="reader, editor or admin")
    add.add_argument("--dvc", default="write", help="read, write or none")
    add.add_argument("--pubkey", default="", help="their OpenSSH public key file")
    add.set_defaults(func=_add_user)
    remove = sub.add_parser("remove-user", help="remove a person from deploy/ENV/people.yml")
    remove.add_argument("env")
    remove.add_argument("name")
    remove.set_defaults(func=_remove_user)
    rotate = sub.add_parser("rotate-user", help="drop a person's generated password and key")
    rotate.add_argument("env")
    rotate.add_argument("name")
    rotate.add_argument("--pubkey", default="", help="a new public key file of theirs")
    rotate.set_defaults(func=_rotate_user)
    chromium = sub.add_parser("chromium", help="print Chromium's path, installing it if need be")
    chromium.set_defaults(func=_chromium)
