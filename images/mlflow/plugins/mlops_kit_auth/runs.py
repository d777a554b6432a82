"""What MLflow's permission check on a run needs to know about the run, kept per process.

MLflow (3.17) checks a request on a run (log_batch, log_metric, set_tag, get, ...) against
the run's experiment, and finds that experiment by loading the whole run -- its params, tags
and the latest value of every metric -- on every request (``auth._run_requirement``). Under a
log_batch load that was the largest single part of the server's work per request.

A run never moves to another experiment (MLflow has no API that moves one), so what that
look-up yields for a run and an action -- the experiment to anchor on and the requirements to
meet there -- never changes, and is kept here. The decision itself is not kept: MLflow still
resolves the user's grants on that experiment on every request.

Only runs that exist are kept: an unknown run id is looked up again next time, and denied as
MLflow denies it. A run deleted for good (``mlflow gc``) stays known until it falls out of the
cache, which changes nothing a user can learn: its experiment is checked as before, and the
request then finds no run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache

# Runs written to at the same time are few; an entry is a few hundred bytes.
KNOWN_RUNS = 20_000

Resolved = tuple[tuple[str, str], list[Any]]
RunRequirement = Callable[[str, str], "Resolved | None"]


def remembering(run_requirement: RunRequirement, size: int = KNOWN_RUNS) -> RunRequirement:
    """``run_requirement`` that looks each (run, action) up once and answers from memory after.

    Callers get a list of their own each time (MLflow appends a logged model's requirements
    to it)."""
    known: LRUCache[tuple[str, str], tuple[tuple[str, str], tuple[Any, ...]]] = LRUCache(size)
    lock = threading.Lock()

    def kit_run_requirement(run_id: str, action: str) -> Resolved | None:
        key = (run_id, action)
        with lock:
            kept = known.get(key)
        if kept is None:
            resolved = run_requirement(run_id, action)
            if resolved is None:
                return None
            anchor, requirements = resolved
            kept = (anchor, tuple(requirements))
            with lock:
                known[key] = kept
        anchor, requirements_kept = kept
        return anchor, list(requirements_kept)

    kit_run_requirement.remembers_runs = True  # type: ignore[attr-defined]
    return kit_run_requirement


def remember_runs(auth: Any) -> bool:
    """Wrap ``auth._run_requirement`` (MLflow's basic-auth module) once. False when this MLflow
    has no such function (nothing to speed up then)."""
    original = getattr(auth, "_run_requirement", None)
    if original is None:
        return False
    if not getattr(original, "remembers_runs", False):
        auth._run_requirement = remembering(original)
    return True
