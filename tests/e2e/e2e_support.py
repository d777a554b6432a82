"""Helpers of the end-to-end run (`make test-e2e`): real make, Ansible, Docker and clients.

The run uses environment `e2e` (deploy/e2e/: prefix mlops-e2e, its own ports and volumes), so
it never touches `local`. MLOPS_E2E_KEEP=1 leaves the stack up after a failure for debugging.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlopskit.docker_env import PG_SHELL
from mlopskit.environments import parse_connection_env
from mlopskit.stack import load_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_ENV = "e2e"
HEALTH_TIMEOUT_S = 300
STEP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Result:
    args: Sequence[str]
    returncode: int
    output: str
    seconds: float

    def explain(self) -> str:
        return (
            f"{' '.join(self.args)} exited {self.returncode} after {self.seconds:.0f}s:\n"
            + (self.output[-6000:])
        )


def run(
    args: Sequence[str], *, env: dict[str, str] | None = None, stdin: int | None = None
) -> Result:
    """Run a command from the repository root; output is captured (stdout + stderr)."""
    started = time.monotonic()
    process = subprocess.run(
        list(args),
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    seconds = time.monotonic() - started
    print(f"[e2e] {' '.join(args)}: exit {process.returncode} in {seconds:.1f}s", file=sys.stderr)
    return Result(args, process.returncode, process.stdout, seconds)


def make(*targets: str, **variables: str) -> Result:
    return run(
        ["make", "--no-print-directory", *targets, *(f"{k}={v}" for k, v in variables.items())]
    )


def ansible_playbook(
    playbook: str, inventory: Path, settings: Path, env_name: str, *extra: str
) -> Result:
    """The command `make deploy` runs, with extra `-e` arguments (setting overrides)."""
    args = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i", str(inventory),
        "-e", f"@{settings}",
        "-e", f"mlops_env={env_name}",
        *extra,
        f"ansible/{playbook}",
    ]  # fmt: skip
    return run(args, env={"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible" / "ansible.cfg")})


def recap_changed(output: str) -> dict[str, int]:
    """host -> changed count from the PLAY RECAP of ansible-playbook's output."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    return {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:.*?changed=(\d+)", recap, re.M)
    }


def docker_json(*args: str) -> list[dict]:
    out = subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def docker_names(kind: str, label: str) -> list[str]:
    """Names of containers/networks/volumes carrying label (key=value)."""
    command = {
        "container": ["docker", "ps", "-a", "--format", "{{.Names}}"],
        "network": ["docker", "network", "ls", "--format", "{{.Name}}"],
        "volume": ["docker", "volume", "ls", "--format", "{{.Name}}"],
    }[kind]
    out = subprocess.run(
        [*command, "--filter", f"label={label}"], check=True, capture_output=True, text=True
    )
    return sorted(out.stdout.split())


def containers(env: str = E2E_ENV) -> dict[str, str]:
    """service -> container, as the last deploy of <env> wrote them to build/<env>/stack.json."""
    return {key: service.name for key, service in load_stack(env).services.items()}


def container_states(
    env: str = E2E_ENV, names: dict[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """service -> (container id, StartedAt): a restart or a re-creation changes it. ``names``
    (service -> container) stands in for build/<env>/stack.json when that is not there."""
    states = {}
    for service, container in (names or containers(env)).items():
        (info,) = docker_json("inspect", container)
        states[service] = (info["Id"], info["State"]["StartedAt"])
    return states


def wait_healthy(env: str = E2E_ENV, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = {}
        for service, container in containers(env).items():
            (info,) = docker_json("inspect", container)
            status[service] = info["State"].get("Health", {}).get("Status")
        if all(value == "healthy" for value in status.values()):
            return
        assert time.monotonic() < deadline, f"not healthy within {timeout_s}s: {status}"
        time.sleep(2)


def assert_no_secret_in(output: str, secrets_dir: Path) -> None:
    """What a hostile reader of a deploy's log (CI, a terminal recording) would look for: none
    of the environment's generated secrets (public keys aside) appears in it."""
    secrets = [p for p in secrets_dir.iterdir() if p.is_file() and p.suffix != ".pub"]
    assert secrets, f"no secrets in {secrets_dir} to look for"
    for path in secrets:
        secret = path.read_text().strip()
        assert secret, f"{path} is empty"
        assert secret not in output, f"the output holds the secret of {path.name}"


def psql(sql: str, database: str = "mlflow", env: str = E2E_ENV) -> str:
    """Run SQL as PostgreSQL's superuser inside the environment's PostgreSQL container."""
    return subprocess.run(
        ["docker", "exec", containers(env)["postgresql"], "sh", "-c", PG_SHELL, "sh",
         "psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database, "-c", sql],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip


# Where the e2e suites keep what CI archives (timings, screenshots): build/<env>/ goes with a purge.
KEEP_DIR = REPO_ROOT / "build" / "test-e2e"


def purge(env: str) -> None:
    """make destroy PURGE=1 of ``env``, without asking; the backups stay (by design)."""
    result = make("destroy", ENV=env, PURGE="1", YES="1")
    assert result.returncode == 0, result.explain()


def kept_timings(file_name: str, label: str) -> Iterator[dict[str, float]]:
    """Body of a module fixture: the dict the tests fill with seconds, then written to
    KEEP_DIR/file_name and printed. Figures, not verdicts (for the CI log and the notes)."""
    measured: dict[str, float] = {}
    yield measured
    KEEP_DIR.mkdir(parents=True, exist_ok=True)
    (KEEP_DIR / file_name).write_text(json.dumps(measured, indent=2))
    # A key that does not end with its unit, e.g. "(count)", is in seconds.
    shown = (
        f"{k} {v:.0f}" if re.search(r"\((s|count|MB)\)$", k) else f"{k} {v:.0f}s"
        for k, v in measured.items()
    )
    print(f"\n[e2e] {label}: " + ", ".join(shown))


def write_e2e_settings(env: str, **overrides: object) -> None:
    """deploy/<env>/settings.yml: deploy/e2e's with the prefix mlops-<env> and ``overrides``."""
    settings = yaml.safe_load((REPO_ROOT / "deploy" / E2E_ENV / "settings.yml").read_text())
    settings.update(mlops_docker_name_prefix=f"mlops-{env}", **overrides)
    (REPO_ROOT / "deploy" / env / "settings.yml").write_text(yaml.safe_dump(settings))


@contextmanager
def deployed_environment(env: str, **overrides: object) -> Iterator[Result]:
    """`make deploy ENV=<env>` of a deploy/<env>/ made from deploy/e2e/ (its inventory and
    people, write_e2e_settings), yielding the deploy's result; purged and removed at the end."""
    deploy_dir = REPO_ROOT / "deploy" / env
    shutil.rmtree(deploy_dir, ignore_errors=True)
    deploy_dir.mkdir()
    for name in ("inventory.yml", "people.yml"):
        shutil.copy(REPO_ROOT / "deploy" / E2E_ENV / name, deploy_dir)
    write_e2e_settings(env, **overrides)
    # What an interrupted earlier run left (containers, volumes with other passwords) goes first.
    purge(env)
    try:
        result = make("deploy", ENV=env)
        assert result.returncode == 0, result.explain()
        yield result
    finally:
        if os.environ.get("MLOPS_E2E_KEEP") != "1":
            try:
                purge(env)
            finally:
                shutil.rmtree(deploy_dir, ignore_errors=True)


def person_connection(env: str, name: str) -> dict[str, str]:
    """What build/<env>/people/<name>/connection.env hands that person."""
    path = REPO_ROOT / "build" / env / "people" / name / "connection.env"
    return parse_connection_env(path.read_text())
