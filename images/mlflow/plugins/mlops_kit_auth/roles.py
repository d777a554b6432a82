"""The kit's MLflow roles and people, as data: no MLflow import, so unit tests can read it.

A person has one role. MLflow's basic auth knows admins and per-resource grants; the kit maps
its roles onto MLflow's RBAC roles (in the default workspace) as follows:

- ``reader``: READ on every experiment, run, trace, logged and registered model and prompt;
  no write of any kind (the app refuses every request whose MLflow validator is not a read,
  creating experiments and models included, which stock MLflow allows every user).
- ``editor``: EDIT on every experiment, registered model and prompt (the containers): log
  runs, traces and logged models into any experiment, register models and versions, set
  aliases, create experiments and models (as in stock MLflow). MLflow grants the creator of
  an experiment, registered model or prompt MANAGE on it, so an editor deletes and manages
  (shares, through per-user grants) what they created, everything inside it included (runs
  others logged there too), and nothing else: not even a run of their own in someone else's
  experiment, as MLflow keeps no owner per run. The contained types (runs, traces, logged
  models, versions) get no grant of their own: MLflow judges them by their container only
  when the role holds no grant on their type, and a role-wide EDIT there would override the
  creator's MANAGE, so nothing inside could ever be deleted (an experiment's or model's
  delete cascades to them and needs delete on them).
- ``admin``: an MLflow admin (``is_admin``), for people who manage users and permissions.
- ``metrics``: the account a Prometheus scraper uses: ``/metrics`` and nothing else (DENY on
  every resource type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

WORKSPACE = "default"
ROLE_PREFIX = "mlops-kit-"
PERSON_ROLES = ("reader", "editor", "admin")
# A person's access to the DVC remote (people.yml `dvc`); on an S3 remote, the bucket policy
# the server converges (dvc_s3.py).
DVC_LEVELS = ("read", "write", "none")
METRICS_ROLE = "metrics"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

CONTENT_TYPES = (
    "experiment",
    "run",
    "trace",
    "logged_model",
    "registered_model",
    "registered_model_version",
    "prompt",
    "prompt_version",
)
# What holds the rest: a run, trace or logged model lives in an experiment, a version in its
# model or prompt. MLflow grants a creator MANAGE on these.
CONTAINER_TYPES = ("experiment", "registered_model", "prompt")
# Everything a DENY must cover so that an account sees nothing.
ALL_RESOURCE_TYPES = (
    *CONTENT_TYPES,
    "assessment",
    "scorer",
    "scorer_version",
    "review_queue",
    "gateway_secret",
    "gateway_endpoint",
    "gateway_model_definition",
    "mcp_server",
    "mcp_server_version",
)

# role -> (resource type, permission) pairs, each on pattern "*".
ROLE_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "reader": tuple((kind, "READ") for kind in CONTENT_TYPES),
    # Containers only: a grant on a contained type would shadow the creator's MANAGE.
    "editor": tuple((kind, "EDIT") for kind in CONTAINER_TYPES),
    "admin": (),
    METRICS_ROLE: tuple((kind, "DENY") for kind in ALL_RESOURCE_TYPES),
}

# MLflow names its authorization checks validate_can_<action>_<resource>. Besides GET and
# HEAD requests, a reader may pass only the checks of these actions (searches are POSTs); any
# other, and any unnamed check, is refused: fail closed.
READ_ACTIONS = ("read", "view", "list", "search", "get", "query")
_READ_VALIDATOR = re.compile(rf"^_?validate_can_({'|'.join(READ_ACTIONS)})(_|$)")


def mlflow_role_name(role: str) -> str:
    return ROLE_PREFIX + role


def is_read_validator(validator: Callable[..., object]) -> bool:
    """True when MLflow's validator authorizes a read (by its name; partials unwrapped)."""
    while hasattr(validator, "func"):  # functools.partial
        validator = validator.func  # type: ignore[attr-defined]
    return bool(_READ_VALIDATOR.match(getattr(validator, "__name__", "")))


class PeopleError(ValueError):
    """The people list is wrong; the message names the entry and the fix."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password: str
    dvc: str = "none"

    def __repr__(self) -> str:  # never print a password
        return f"Account({self.name!r}, {self.role!r}, dvc={self.dvc!r})"


def read_people(directory: Path, admin_username: str, metrics_username: str) -> list[Account]:
    """people.json ([{"name", "role", "dvc"}], dvc optional: none) and one <name>.password
    file per person."""
    try:
        entries = json.loads((directory / "people.json").read_text())
    except (OSError, ValueError) as exc:
        raise PeopleError(f"{directory}/people.json cannot be read as JSON: {exc}") from None
    if not isinstance(entries, list):
        raise PeopleError(f"{directory}/people.json must be a list of {{name, role}} objects")
    accounts: list[Account] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise PeopleError(f"{directory}/people.json: {entry!r} is not a {{name, role}} object")
        name, role = str(entry.get("name", "")), str(entry.get("role", ""))
        if not NAME_PATTERN.match(name):
            raise PeopleError(f"person name {name!r} must match {NAME_PATTERN.pattern}")
        if name in {admin_username, metrics_username}:
            raise PeopleError(f"person name {name!r} is reserved for the platform's own account")
        if name in seen:
            raise PeopleError(f"person {name!r} is listed twice")
        if role not in PERSON_ROLES:
            raise PeopleError(f"person {name!r}: role {role!r} must be one of {PERSON_ROLES}")
        dvc = str(entry.get("dvc", "none"))
        if dvc not in DVC_LEVELS:
            raise PeopleError(f"person {name!r}: dvc {dvc!r} must be one of {DVC_LEVELS}")
        try:
            password = (directory / f"{name}.password").read_text().rstrip("\r\n")
        except OSError:
            raise PeopleError(f"person {name!r} has no {directory}/{name}.password") from None
        if len(password) < 12:
            raise PeopleError(f"person {name!r}: the password must be at least 12 characters")
        seen.add(name)
        accounts.append(Account(name, role, password, dvc))
    return accounts
