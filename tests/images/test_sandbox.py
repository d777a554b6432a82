"""The test sandbox starts clean: what an interrupted run under the same fixed prefix left
(a container, a volume with state in it, the network) is gone before the new run uses the names.
"""

from __future__ import annotations

import uuid

from tests.support.docker import Sandbox, docker


def names(*command: str, field: str = "Name") -> set[str]:
    return set(docker(*command, "--format", f"{{{{.{field}}}}}").stdout.split())


def test_a_sandbox_removes_what_an_interrupted_run_left(images) -> None:
    prefix = f"mlkit-it-leftover-{uuid.uuid4().hex[:6]}"
    interrupted = Sandbox(prefix)
    volume = interrupted.volume("store")
    interrupted.run("store", images.ref("postgresql"), command=["sleep", "600"],
                    mounts=[f"{volume}:/data"])  # fmt: skip
    # The interrupted run never reaches destroy(); the next one comes with the same prefix.
    fresh = Sandbox(prefix)
    try:
        assert f"{prefix}-store" not in names("ps", "--all", field="Names")
        assert volume not in names("volume", "ls")
        assert fresh.network in names("network", "ls")
        assert docker("volume", "inspect", fresh.volume("store")).returncode == 0
    finally:
        fresh.destroy()
    assert not {name for name in names("volume", "ls") if name.startswith(prefix)}
    assert fresh.network not in names("network", "ls")
