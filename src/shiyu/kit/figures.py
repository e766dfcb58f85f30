"""Benchmark and test figures written to a JSON file (``benchmarks/results.json``).

Every script in ``benchmarks/`` and the crash and fuzz tools merge their figures here
under a key of their own. ``make bench`` sets ``SHIYU_BENCH_RUN`` to one id for the
whole run; each figure written under it carries that id as ``run``, so the table at the
end (``tools/bench_table.py``) can tell which figures came from the same run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_ENV = "SHIYU_BENCH_RUN"


def merge_json(path: Path, key: str, results: dict[str, Any], *, merge_keys: bool = False) -> None:
    """Put ``results`` under ``key`` in the JSON file at ``path`` (the other keys are
    kept); with ``merge_keys`` the figures already under ``key`` are updated rather than
    replaced. The run id of ``make bench`` is added as ``run`` when it is set."""
    existing: dict[str, Any] = {}
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8") or "{}")
    run = os.environ.get(RUN_ENV)
    if run:
        results = {**results, "run": run}
    if merge_keys and isinstance(existing.get(key), dict):
        existing[key] = {**existing[key], **results}
    else:
        existing[key] = results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"figures merged into {path} under '{key}'")
