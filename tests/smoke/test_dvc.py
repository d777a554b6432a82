"""DVC and git the way the team works: data in the DVC remote (on SFTP, or on S3 with the
person's own keys), code and .dvc files in git, MLflow runs that record the git commit, and a
fresh clone that restores a run's data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.smoke.smoke_support import connect_sftp

VENV_BIN = Path(sys.executable).parent
DATASET_FILES = 120
REMOTE = "store"


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def shell(client_env, tmp_path_factory):
    """Run git/dvc in a directory with the user's environment (connection.env sourced)."""
    home = tmp_path_factory.mktemp("home")
    env = {
        **client_env,
        "PATH": f"{VENV_BIN}{os.pathsep}{client_env.get('PATH', '')}",
        "HOME": str(home),
        "GIT_AUTHOR_NAME": "Smoke Test",
        "GIT_AUTHOR_EMAIL": "smoke@example.invalid",
        "GIT_COMMITTER_NAME": "Smoke Test",
        "GIT_COMMITTER_EMAIL": "smoke@example.invalid",
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }

    def run(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            list(args),
            cwd=cwd,
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    return run


def sftp_secrets() -> list[tuple[str, str]]:
    return [("keyfile", os.environ["SFTP_PRIVATE_KEY"])]


@pytest.fixture(scope="module")
def remote_secrets(request: pytest.FixtureRequest) -> list[tuple[str, str]]:
    """What goes into .dvc/config.local only: the SFTP key, or the person's own S3 keys (and
    the store's CA)."""
    if not os.environ["DVC_REMOTE_URL"].startswith("s3://"):
        return sftp_secrets()
    local = [("credentialpath", str(request.getfixturevalue("s3_credentials")))]
    if ca := os.environ.get("DVC_S3_CA_FILE"):
        local.append(("ssl_verify", ca))
    return local


def configure_remote(
    shell, repo: Path, *, add: bool, secrets: list[tuple[str, str]] | None = None
) -> None:
    """What the README tells users: the URL (and an S3 endpoint) in git, the keys only in
    .dvc/config.local (``secrets``; by default the SFTP key)."""
    if add:
        shell("dvc", "remote", "add", "-d", REMOTE, os.environ["DVC_REMOTE_URL"], cwd=repo)
        if endpoint := os.environ.get("DVC_S3_ENDPOINT_URL"):
            shell("dvc", "remote", "modify", REMOTE, "endpointurl", endpoint, cwd=repo)
    for option, value in secrets or sftp_secrets():
        shell("dvc", "remote", "modify", "--local", REMOTE, option, value, cwd=repo)


def write_dataset(root: Path, version: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(DATASET_FILES):
        shard = root / f"shard-{index % 6}"
        shard.mkdir(exist_ok=True)
        (shard / f"sample-{index:04d}.csv").write_text(
            "x,y\n" + "".join(f"{index * version + row},{row % 3}\n" for row in range(50))
        )
    (root / "big.bin").write_bytes(hashlib.sha256(str(version).encode()).digest() * 40000)


TRAIN_SCRIPT = textwrap.dedent(
    """
    import hashlib, pathlib, mlflow

    data = pathlib.Path("data")
    files = sorted(p for p in data.rglob("*") if p.is_file())
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    with mlflow.start_run() as run:
        mlflow.log_param("n_files", len(files))
        mlflow.log_param("data_sha256", digest)
        csv_files = [p for p in files if p.suffix == ".csv"]
        mlflow.log_metric("rows", sum(len(p.read_text().splitlines()) for p in csv_files))
    print("RUN_ID=" + run.info.run_id)
    """
)


@pytest.fixture(scope="module")
def project(shell, tmp_path_factory, run_id_tag, manifest, client_env, remote_secrets):
    """A git + DVC project with two data versions, each pushed and trained on."""
    repo = tmp_path_factory.mktemp("project")
    shell("git", "init", "-q", "-b", "main", cwd=repo)
    shell("dvc", "init", "-q", cwd=repo)
    configure_remote(shell, repo, add=True, secrets=remote_secrets)
    (repo / "train.py").write_text(TRAIN_SCRIPT)
    experiment = f"smoke-dvc-{run_id_tag}"
    versions = []
    for version in (1, 2):
        write_dataset(repo / "data", version)
        shell("dvc", "add", "-q", "data", cwd=repo)
        shell("git", "add", "-A", cwd=repo)
        shell("git", "commit", "-q", "-m", f"data v{version}", cwd=repo)
        shell("dvc", "push", "-q", cwd=repo)
        commit = shell("git", "rev-parse", "HEAD", cwd=repo).strip()
        # The experiment comes from MLflow's own variable, as in a CI job.
        run_id = shell(
            sys.executable, "train.py", cwd=repo, extra_env={"MLFLOW_EXPERIMENT_NAME": experiment}
        )
        (run_id,) = [line[7:] for line in run_id.splitlines() if line.startswith("RUN_ID=")]
        versions.append({"commit": commit, "run_id": run_id, "digest": tree_digest(repo / "data")})
    cache_files = [
        str(p.relative_to(repo / ".dvc" / "cache"))
        for p in (repo / ".dvc" / "cache").rglob("*")
        if p.is_file()
    ]
    manifest["experiments"].append(experiment)
    manifest["runs"].extend({"run_id": version["run_id"]} for version in versions)
    manifest["dvc_objects"].extend(cache_files)
    return {"repo": repo, "versions": versions, "cache_files": cache_files}


def test_dataset_of_many_files_round_trips(shell, project, tmp_path, remote_secrets):
    assert len(project["versions"][-1]["digest"]) > DATASET_FILES
    clone = tmp_path / "clone"
    shell("git", "clone", "-q", str(project["repo"]), str(clone), cwd=tmp_path)
    configure_remote(shell, clone, add=False, secrets=remote_secrets)
    shell("dvc", "pull", "-q", cwd=clone)
    assert tree_digest(clone / "data") == project["versions"][-1]["digest"]


def test_run_records_its_git_commit(project):
    import mlflow

    for version in project["versions"]:
        tags = mlflow.get_run(version["run_id"]).data.tags
        assert tags.get("mlflow.source.git.commit") == version["commit"]


def test_checkout_of_a_runs_commit_restores_its_data(shell, project, tmp_path, remote_secrets):
    import mlflow

    first = project["versions"][0]
    assert first["digest"] != project["versions"][1]["digest"], "the two data versions must differ"
    commit = mlflow.get_run(first["run_id"]).data.tags["mlflow.source.git.commit"]
    clone = tmp_path / "reproduce"
    shell("git", "clone", "-q", str(project["repo"]), str(clone), cwd=tmp_path)
    shell("git", "checkout", "-q", commit, cwd=clone)
    configure_remote(shell, clone, add=False, secrets=remote_secrets)
    shell("dvc", "pull", "-q", cwd=clone)
    assert tree_digest(clone / "data") == first["digest"]
    logged = mlflow.get_run(first["run_id"]).data.params["data_sha256"]
    files = sorted(p for p in (clone / "data").rglob("*") if p.is_file())
    assert hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest() == logged


@pytest.mark.sftp_login
def test_dvc_objects_are_on_sftp(client_env, project):
    """The remote holds every object of the local cache (checked over SFTP, not via DVC)."""
    client = connect_sftp(client_env)
    try:
        sftp = client.open_sftp()
        repo = project["repo"]
        for relative in project["cache_files"]:
            local = repo / ".dvc" / "cache" / relative
            assert sftp.stat(f"/data/dvc/{relative}").st_size == local.stat().st_size, relative
    finally:
        client.close()


@pytest.mark.s3_remote
def test_dvc_objects_are_in_the_bucket(client_env, project, person_s3):
    """The remote holds every object of the local cache under its prefix (checked with the
    person's own keys, not via DVC)."""
    bucket, _, prefix = client_env["DVC_REMOTE_URL"].removeprefix("s3://").partition("/")
    repo = project["repo"]
    for relative in project["cache_files"]:
        local = repo / ".dvc" / "cache" / relative
        head = person_s3.head_object(Bucket=bucket, Key=f"{prefix.strip('/')}/{relative}")
        assert head["ContentLength"] == local.stat().st_size, relative
