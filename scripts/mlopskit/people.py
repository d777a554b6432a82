"""The people of an environment (deploy/<env>/people.yml): add, remove, rotate.

The file is data that `make deploy` converges (ansible/tasks/check_people.yml validates it);
these commands only edit it (and, for a rotation, drop the person's generated secrets), then
the Makefile runs the same deploy. Checks here mirror the playbook's so that a typo fails
before anything runs.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .environments import Environment
from .shell import CommandError

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED = frozenset({"admin", "metrics", "mlflow"})
MLFLOW_ROLES = ("reader", "editor", "admin")
DVC_LEVELS = ("read", "write", "none")
# What a deploy generates for a person (ansible/roles/*/vars: person files).
GENERATED = ("mlflow_password", "id_rsa", "id_rsa.pub")
HEADER = """\
# People of this environment. `make add-user`, `make remove-user` and `make rotate-user` edit
# this file and deploy; editing it by hand and running `make deploy` is the same. Each person:
#   name        MLflow login and folder build/<env>/people/<name>/ ([a-z][a-z0-9_-]{0,31})
#   mlflow      reader | editor | admin          (images/README.md: roles)
#   dvc         read | write | none              (the DVC remote)
#   public_key  optional OpenSSH public key; empty: the deploy generates a key pair
"""


@dataclass(frozen=True)
class Person:
    name: str
    mlflow: str = "editor"
    dvc: str = "write"
    public_key: str = ""

    def as_entry(self) -> dict[str, str]:
        entry = {"name": self.name, "mlflow": self.mlflow, "dvc": self.dvc}
        if self.public_key:
            entry["public_key"] = self.public_key
        return entry


def people_file(env: Environment) -> Path:
    return env.deploy_dir / "people.yml"


def read_people(path: Path) -> list[Person]:
    if not path.is_file():
        return []
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("mlops_people") or [] if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CommandError(f"{path}: mlops_people must be a list of people")
    people = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise CommandError(f"{path}: {entry!r} is not a person (name, mlflow, dvc)")
        people.append(
            Person(
                name=str(entry["name"]),
                mlflow=str(entry.get("mlflow", "")),
                dvc=str(entry.get("dvc", "none")),
                public_key=str(entry.get("public_key") or ""),
            )
        )
    return people


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as yamllint (and most people) expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def write_people(path: Path, people: list[Person]) -> None:
    body = yaml.dump(
        {"mlops_people": [person.as_entry() for person in people]},
        Dumper=_IndentedDumper,
        sort_keys=False,
        default_flow_style=False,
        width=1000,
    )
    path.write_text(HEADER + body)


def read_public_key(path: str) -> str:
    """One OpenSSH public key line, checked with ssh-keygen; never a private key."""
    key_file = Path(path).expanduser()
    if not key_file.is_file():
        raise CommandError(f"PUBKEY={path} is not a file; give the path of a .pub file")
    text = key_file.read_text().strip()
    if "PRIVATE KEY" in text:
        raise CommandError(f"PUBKEY={path} is a private key; give the .pub file next to it")
    lines = [line for line in text.splitlines() if line.strip()]
    check = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key_file)], capture_output=True, text=True, check=False
    )
    if len(lines) != 1 or check.returncode != 0:
        raise CommandError(f"PUBKEY={path} does not hold exactly one OpenSSH public key")
    return lines[0]


def check_person(person: Person) -> None:
    if not NAME.match(person.name):
        raise CommandError(
            f"NAME={person.name!r}: use lower-case letters, digits, _ and -, starting with a "
            "letter (at most 32)"
        )
    if person.name in RESERVED:
        raise CommandError(f"NAME={person.name} is reserved for the platform's own accounts")
    if person.mlflow not in MLFLOW_ROLES:
        raise CommandError(f"ROLE={person.mlflow!r} must be one of {', '.join(MLFLOW_ROLES)}")
    if person.dvc not in DVC_LEVELS:
        raise CommandError(f"DVC={person.dvc!r} must be one of {', '.join(DVC_LEVELS)}")


def add_person(env: Environment, person: Person) -> str:
    """Add or update a person; returns what changed, for the log."""
    check_person(person)
    path = people_file(env)
    people = read_people(path)
    existing = next((p for p in people if p.name == person.name), None)
    if existing is None:
        people.append(person)
        change = f"added {person.name}"
    else:
        # A key given before stays unless a new one is given.
        kept = person.public_key or existing.public_key
        people[people.index(existing)] = Person(person.name, person.mlflow, person.dvc, kept)
        change = f"updated {person.name}"
    write_people(path, people)
    return f"{change} in {path.relative_to(env.deploy_dir.parent.parent)}"


def remove_person(env: Environment, name: str) -> str:
    path = people_file(env)
    people = read_people(path)
    if name not in {p.name for p in people}:
        known = ", ".join(p.name for p in people) or "nobody"
        raise CommandError(f"NAME={name} is not in {path}; listed: {known}")
    write_people(path, [p for p in people if p.name != name])
    return f"removed {name}; the next deploy revokes their MLflow login and SFTP key"


def rotate_person(env: Environment, name: str, public_key: str = "") -> str:
    """Drop the person's generated password and key pair (and take a new public key)."""
    path = people_file(env)
    people = read_people(path)
    person = next((p for p in people if p.name == name), None)
    if person is None:
        raise CommandError(f"NAME={name} is not in {path}; add them with make add-user")
    if public_key:
        people[people.index(person)] = Person(name, person.mlflow, person.dvc, public_key)
        write_people(path, people)
    person_dir = env.build_dir / "people" / name
    for file_name in GENERATED:
        (person_dir / file_name).unlink(missing_ok=True)
    return f"rotated {name}: the next deploy sets a new password and key"
