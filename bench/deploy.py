"""Deploy and memory areas of `make bench` (Docker target): a cold deploy of a throw-away
environment, a warm deploy of the measured one (nothing to change), a deploy with one changed
setting (which containers it re-created), and the stack's memory once the benchmark is over."""

from __future__ import annotations

import time

from mlopskit.environments import Environment
from mlopskit.stack import load_stack

from bench.docker_deploy import (
    Played,
    cold_deploy,
    container_ids,
    memory_bytes,
    playbook,
    recreated,
)
from bench.report import Goal, Row

AREA = "deploy"
# The setting changed for the "one changed setting" deploy: MLflow's alone, so only the MLflow
# container may be re-created. Deploy/<env> must not already hold this value.
CHANGED_SETTING = "mlops_docker_auth_cache_ttl_seconds"
CHANGED_VALUE = 59
MIB = 1024**2
WARM_GOAL = Goal(15, at_most=True, of_ratio=False)
MEMORY_GOAL = Goal(1024, at_most=True, of_ratio=False)


def deploy_env(env: Environment, *extra: str) -> Played:
    return playbook(env.deploy_dir, "deploy.yml", *extra, env_name=env.name)


def run(env: Environment) -> list[Row]:
    print("deploy: cold (throw-away environment), warm, one changed setting")
    cold, _, _ = cold_deploy()
    warm = deploy_env(env)
    stack = load_stack(env.name)
    before = container_ids(stack)
    changed = deploy_env(env, "-e", f"{CHANGED_SETTING}={CHANGED_VALUE}")
    renewed = recreated(before, container_ids(stack))
    print(f"  cold {cold.seconds:.1f} s, warm {warm.seconds:.1f} s (changed={warm.changed}), "
          f"{CHANGED_SETTING} changed {changed.seconds:.1f} s, re-created {renewed}")  # fmt: skip
    if not renewed:
        raise RuntimeError(
            f"deploying with {CHANGED_SETTING}={CHANGED_VALUE} re-created no container: does "
            f"deploy/{env.name}/settings.yml set it to {CHANGED_VALUE} already?"
        )
    print("deploy: back to the environment's own settings")
    deploy_env(env)
    one = f"one changed setting ({CHANGED_SETTING})"
    return [
        Row(AREA, "cold deploy (images present, no containers, volumes or secrets), wall time",
            "s", cold.seconds),
        Row(AREA, "warm deploy (nothing changed), wall time", "s", warm.seconds, goal=WARM_GOAL),
        Row(AREA, "warm deploy: tasks changed", "", warm.changed,
            goal=Goal(0, at_most=True, of_ratio=False)),
        Row(AREA, f"{one}, wall time", "s", changed.seconds),
        Row(AREA, f"{one}: containers re-created ({', '.join(renewed)})", "", len(renewed),
            goal=Goal(1, at_most=True, of_ratio=False)),
    ]  # fmt: skip


def memory(env: Environment, settle_seconds: float) -> list[Row]:
    """Each service's memory and the total, ``settle_seconds`` after the load ended."""
    print(f"memory: idle for {settle_seconds:g} s, then docker stats")
    time.sleep(settle_seconds)
    used = {key: memory_bytes(s.name) / MIB for key, s in load_stack(env.name).services.items()}
    rows = [Row("memory", f"{key}, idle after the transfers", "MiB", value)
            for key, value in used.items()]  # fmt: skip
    rows.append(Row("memory", "whole stack, idle after the transfers", "MiB",
                    sum(used.values()), goal=MEMORY_GOAL))  # fmt: skip
    return rows
