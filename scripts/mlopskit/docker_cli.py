"""The command groups that act on an environment (deploy/ENV/): `stack` and `people`."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def _backup(args: argparse.Namespace) -> None:
    from .backup import backup_command

    backup_command(args.env, args.keep)


def _pre_upgrade(args: argparse.Namespace) -> None:
    from .backup import pre_upgrade_command

    pre_upgrade_command(args.env)


def _upgrade_postgresql(args: argparse.Namespace) -> None:
    from .pgmajor import upgrade_postgresql_command

    upgrade_postgresql_command(args.env)


def _rollback_advice(args: argparse.Namespace) -> None:
    from .backup import rollback_advice_command

    rollback_advice_command(args.env, args.backups)


def _restore(args: argparse.Namespace) -> None:
    from .restore import restore_command

    restore_command(args.env, args.source)


def _env_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], None],
    text: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text)
    parser.add_argument("env", help="environment name (deploy/ENV/)")
    parser.set_defaults(func=func)
    return parser


def add_stack_commands(sub: argparse._SubParsersAction) -> None:
    """mlopskit stack COMMAND ENV: the deploy workflow (mk/deploy.mk) and operations (mk/ops.mk)."""
    _env_command(sub, "check", _env_check, "fail unless deploy/ENV/ holds inventory and settings")
    _env_command(sub, "info", _info, "print the connection settings of ENV with secrets masked")
    _env_command(sub, "confirm-purge", _confirm_purge, "ask before `make destroy PURGE=1`")
    backup = _env_command(sub, "backup", _backup, "back up the databases and SFTP data of ENV")
    backup.add_argument("--keep", default="", help="then keep only the newest N backups")
    restore = _env_command(sub, "restore", _restore, "restore ENV from a backup")
    restore.add_argument(
        "source", nargs="?", default="", help="a backup directory (default: latest)"
    )
    _env_command(sub, "pre-upgrade", _pre_upgrade, "back up ENV before an upgrade (Docker)")
    advice = _env_command(
        sub,
        "rollback-advice",
        _rollback_advice,
        "name the newest -before-upgrade backup and its restore command (after a failed migration)",
    )
    advice.add_argument("backups", help="the environment's backup directory")
    _env_command(
        sub,
        "upgrade-postgresql",
        _upgrade_postgresql,
        "move ENV's data to another PostgreSQL major by dump and restore (Docker)",
    )


def add_people_commands(sub: argparse._SubParsersAction) -> None:
    """mlopskit people COMMAND ENV NAME: edit deploy/ENV/people.yml (mk/deploy.mk converges)."""
    add = _env_command(sub, "add", _add_user, "add or update a person")
    add.add_argument("name")
    add.add_argument("--role", default="editor", help="reader, editor or admin")
    add.add_argument("--dvc", default="write", help="read, write or none")
    add.add_argument("--pubkey", default="", help="their OpenSSH public key file")
    remove = _env_command(sub, "remove", _remove_user, "remove a person (their data stays)")
    remove.add_argument("name")
    rotate = _env_command(sub, "rotate", _rotate_user, "drop a person's generated password and key")
    rotate.add_argument("name")
    rotate.add_argument("--pubkey", default="", help="a new public key file of theirs")
