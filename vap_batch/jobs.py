"""The job list: a CSV or JSON file with one VAP job per row."""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("reference", "target", "reference_caption", "target_caption")
# per-row overrides and how to read them
OVERRIDES = {"seed": int, "steps": int, "cfg": float, "frames": int, "width": int, "height": int,
             "negative_prompt": str, "reference_negative_prompt": str, "expert": str, "rope_delta": int,
             "start_percent": float, "end_percent": float,
             "reference_cfg": float,  # the row runs with reference guidance (the guidance workflow's sampling)
             "reference_2_negative_prompt": str}
SECOND_REFERENCE = ("reference_2", "reference_2_caption")  # a second reference video and its caption
OPTIONAL = ("name", *SECOND_REFERENCE)


class JobError(ValueError):
    """The job list cannot be used; the message says which row and column."""


@dataclass(kw_only=True)
class Job:
    row: int  # 1-based, as a spreadsheet shows it (header excluded)
    name: str  # output file stem, unique in the list
    reference: Path
    target: Path
    reference_caption: str
    target_caption: str
    overrides: dict = field(default_factory=dict)
    reference_2: Path | None = None
    reference_2_caption: str = ""


def read_jobs(path) -> list[Job]:
    """All the jobs of the list, or a JobError naming every bad row (so nothing is queued from a bad list)."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"{path} does not exist.")
    if path.suffix.lower() not in (".csv", ".json"):
        raise JobError(f"{path}: give a .csv or .json job list.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise JobError(f"{path} is not UTF-8 text (byte {data[err.start]:#04x} on line {line}); "
                       "save it as UTF-8 (in Excel: 'CSV UTF-8').") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise JobError(f"{path} is not valid JSON ({err}).") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise JobError(f"{path} must hold a JSON list of objects, one per job.")
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise JobError(f"{path} has no jobs.")
    jobs, errors = [], []
    for number, row in enumerate(rows, 1):
        try:
            jobs.append(_job(number, row, path.parent))
        except JobError as err:
            errors.append(str(err))
    if errors:
        raise JobError(f"{path} has errors; nothing was queued:\n  " + "\n  ".join(errors))
    names = [j.name for j in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise JobError(f"{path}: job names must be unique (they name the output files); repeated: {duplicates}.")
    return jobs


def _job(number: int, row: dict, base: Path) -> Job:
    if row.get(None):  # csv.DictReader files the fields beyond the header's columns under None
        left_over = ", ".join(repr(v) for v in row[None])
        raise JobError(f"row {number}: more fields than the header has columns ({left_over} left over); "
                       "put text that contains commas in double quotes.")
    row = {str(k).strip(): v for k, v in row.items() if k is not None}
    problems = []  # every one of the row's, reported at once
    unknown = sorted(set(row) - set(REQUIRED) - set(OVERRIDES) - set(OPTIONAL))
    if unknown:
        problems.append(f"unknown column(s) {unknown}; columns are {', '.join(REQUIRED + OPTIONAL)} and the overrides "
                        f"{', '.join(OVERRIDES)}")
    texts = (*REQUIRED, *OPTIONAL, *(key for key, kind in OVERRIDES.items() if kind is str))
    wrong = [key for key in texts if row.get(key) is not None and not isinstance(row[key], str)]  # JSON only
    problems += [f"{key}={row[key]!r} is not text (in JSON, put it in quotes)" for key in wrong]
    missing = [c for c in REQUIRED if c not in wrong and not str(row.get(c) or "").strip()]
    if missing:
        problems.append(f"{', '.join(missing)} missing")
    overrides = {}
    for key, kind in OVERRIDES.items():
        value = row.get(key)
        if value is None or key in wrong or str(value).strip() == "":
            continue
        try:
            overrides[key] = {int: _whole, float: _finite, str: str}[kind](value)
        except ValueError:
            problems.append(f"{key}={value!r} is not a {'whole' if kind is int else 'finite'} number")
    if not wrong:
        problems += filter(None, [_second_reference_problem(row, overrides)])
    if problems:
        raise JobError(f"row {number}: {'; '.join(problems)}.")
    paths = {key: _path(row[key], base) for key in ("reference", "target")}
    name = str(row.get("name") or "").strip() or f"{number:04d}_{paths['target'].stem}_{paths['reference'].stem}"
    second = str(row.get("reference_2") or "").strip()
    return Job(row=number, name=_safe(name), reference=paths["reference"], target=paths["target"],
               reference_caption=str(row["reference_caption"]), target_caption=str(row["target_caption"]),
               overrides=overrides, reference_2=_path(second, base) if second else None,
               reference_2_caption=str(row.get("reference_2_caption") or "") if second else "")


def _second_reference_problem(row: dict, overrides: dict) -> str | None:
    given = [c for c in SECOND_REFERENCE if str(row.get(c) or "").strip()]
    if given == ["reference_2"]:
        return ("reference_2 is given without reference_2_caption; give the second reference's caption (what it "
                "shows, as reference_caption for the first)")
    if "reference_2" not in given and (given or "reference_2_negative_prompt" in overrides):
        column = given[0] if given else "reference_2_negative_prompt"
        return f"{column} is given without reference_2 (the second reference video); give it, or leave {column} empty"
    return None


def _path(text, base: Path) -> Path:
    p = Path(str(text).strip()).expanduser()
    return p if p.is_absolute() else base / p


def _whole(value) -> int:
    """'20' and '20.0' (as spreadsheets may write it) are 20; '2.7', 'inf' and true are refused."""
    if isinstance(value, bool):
        raise ValueError(value)
    text = str(value).strip()
    try:
        return int(text)  # exact, unlike float: seeds go up to 2**64
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise ValueError(value) from None
        return int(number)


def _finite(value) -> float:
    """'4.5' is 4.5; 'nan', 'inf' (and JSON's NaN, Infinity) and true are refused."""
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(str(value).strip())
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _safe(name: str) -> str:
    """A file-name-safe version of a job name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "job"
