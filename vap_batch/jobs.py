"""The job list: a CSV or JSON file with one VAP job per row."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("reference", "target", "reference_caption", "target_caption")
# per-row overrides and how to read them
OVERRIDES = {"seed": int, "steps": int, "cfg": float, "frames": int, "width": int, "height": int,
             "negative_prompt": str, "reference_negative_prompt": str, "expert": str, "rope_delta": int,
             "start_percent": float, "end_percent": float}
OPTIONAL = ("name",)


class JobError(ValueError):
    """The job list cannot be used; the message says which row and column."""


@dataclass
class Job:
    row: int  # 1-based, as a spreadsheet shows it (header excluded)
    name: str  # output file stem, unique in the list
    reference: Path
    target: Path
    reference_caption: str
    target_caption: str
    overrides: dict = field(default_factory=dict)


def read_jobs(path) -> list[Job]:
    path = Path(path)
    if not path.is_file():
        raise JobError(f"{path} does not exist.")
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise JobError(f"{path} is not valid JSON ({err}).") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise JobError(f"{path} must hold a JSON list of objects, one per job.")
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    else:
        raise JobError(f"{path}: give a .csv or .json job list.")
    if not rows:
        raise JobError(f"{path} has no jobs.")
    base = path.parent
    jobs = [_job(i + 1, row, base) for i, row in enumerate(rows)]
    names = [j.name for j in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise JobError(f"{path}: job names must be unique (they name the output files); repeated: {duplicates}.")
    return jobs


def _job(number: int, row: dict, base: Path) -> Job:
    row = {str(k).strip(): v for k, v in row.items() if k is not None}
    unknown = sorted(set(row) - set(REQUIRED) - set(OVERRIDES) - set(OPTIONAL))
    if unknown:
        raise JobError(f"row {number}: unknown column(s) {unknown}; columns are {', '.join(REQUIRED + OPTIONAL)} "
                       f"and the overrides {', '.join(OVERRIDES)}.")
    missing = [c for c in REQUIRED if not str(row.get(c) or "").strip()]
    if missing:
        raise JobError(f"row {number}: {', '.join(missing)} missing.")
    overrides = {}
    for key, kind in OVERRIDES.items():
        value = row.get(key)
        if value is None or str(value).strip() == "":
            continue
        try:
            overrides[key] = kind(value) if kind is not int else int(float(value))
        except ValueError:
            raise JobError(f"row {number}: {key}={value!r} is not a {kind.__name__}.") from None
    paths = {}
    for key in ("reference", "target"):
        p = Path(str(row[key]).strip()).expanduser()
        paths[key] = p if p.is_absolute() else base / p
    name = str(row.get("name") or "").strip() or f"{number:04d}_{paths['target'].stem}_{paths['reference'].stem}"
    return Job(number, _safe(name), paths["reference"], paths["target"], str(row["reference_caption"]),
               str(row["target_caption"]), overrides)


def _safe(name: str) -> str:
    """A file-name-safe version of a job name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "job"
