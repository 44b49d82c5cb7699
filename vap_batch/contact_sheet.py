"""OUT/index.html: a contact sheet of a batch run, one row per job (reference(s), target, result or error,
captions, seed and overrides, time, server), rendered from contact_sheet.html.j2 after every row.

It opens from file:// with no server and no network: media are linked where they lie, by paths
relative to OUT (so the folder can be zipped with them), and only small first-frame posters are
written, to OUT/.posters/, so that a page of hundreds of rows opens fast."""
from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from pathlib import Path

import jinja2

from vap_core.whole_file import write_whole

from .client import OutputError
from .first_frame import write_first_frame
from .workflow import fields_of

POSTERS = ".posters"
POSTER_WIDTH = 160  # pixels, at most
PLAYABLE = (".mp4", ".webm", ".mov", ".mkv", ".avi")  # shown with <video>; anything else (.gif, .webp, images) with <img>

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class ContactSheet:
    """What the runner calls after each row: update(results) rewrites OUT/index.html."""

    def __init__(self, out_dir: Path, jobs: list, server: str, workflow: dict | None = None):
        self.out_dir, self.jobs, self.server = Path(out_dir), jobs, server
        node, name = fields_of(workflow or {})["seed"][0]
        self.default_seed = (workflow or {}).get(node, {}).get("inputs", {}).get(name)

    def update(self, results: list):
        write_contact_sheet(self.out_dir, self.jobs, results, self.server, self.default_seed)


def write_contact_sheet(out_dir: Path, jobs: list, results: list, server: str, default_seed=None) -> Path:
    """Render OUT/index.html for these jobs (a job without a result yet is shown as pending); `server`
    names the run's server(s), each result the one that ran its row."""
    out_dir = Path(out_dir)
    by_row = {r.row: r for r in results}
    rows = [_row(job, by_row.get(job.row), out_dir, default_seed) for job in jobs]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped", "pending")}
    html = _ENV.get_template("contact_sheet.html.j2").render(
        rows=rows, counts=counts, server=server, updated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = out_dir / "index.html"
    try:
        write_whole(path, lambda partial: partial.write_text(html, encoding="utf-8"))
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); fix the output folder and run again "
                          "(finished rows are skipped), or pass --no-html.") from None
    return path


def _row(job, result, out_dir: Path, default_seed) -> dict:
    output = Path(result.output) if result is not None and result.output else None
    seed = job.overrides.get("seed", default_seed)
    return {
        "row": job.row, "name": job.name, "status": result.status if result is not None else "pending",
        "seconds": result.seconds if result is not None else None, "message": result.message if result is not None else "",
        "reference": _media(job.reference, out_dir, f"ref-{_key(job.reference)}"),
        "target": _media(job.target, out_dir, f"ref-{_key(job.target)}"),
        "reference_2": _media(job.reference_2, out_dir, f"ref-{_key(job.reference_2)}") if job.reference_2 else None,
        "reference_2_caption": job.reference_2_caption,
        "result": _media(output, out_dir, job.name) if output is not None else None,
        "reference_caption": job.reference_caption, "target_caption": job.target_caption,
        "seed": seed, "seed_is_default": "seed" not in job.overrides,
        "settings": [(k, v) for k, v in job.overrides.items() if k != "seed"],
        "server": result.server if result is not None else "",
    }


def _media(path: Path, out_dir: Path, poster_name: str) -> dict:
    video = path.suffix.lower() in PLAYABLE
    poster = _poster(path, out_dir / POSTERS / f"{poster_name}.jpg") if video else None
    return {"href": _href(path, out_dir), "name": path.name, "video": video,
            "poster": _href(poster, out_dir) if poster else None}


def _href(path: Path, out_dir: Path) -> str:
    """The path as a URL relative to OUT (a file:// URL where there is none, e.g. another drive)."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
    except ValueError:
        return Path(os.path.abspath(path)).as_uri()
    return urllib.parse.quote(Path(rel).as_posix())


def _key(path: Path) -> str:
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]


def _poster(video: Path, poster: Path) -> Path | None:
    """A small JPEG of the video's first frame (kept while newer than the video); None if it has none."""
    try:
        if poster.is_file() and poster.stat().st_mtime >= video.stat().st_mtime:
            return poster
        poster.parent.mkdir(exist_ok=True)
        return poster if write_whole(poster, lambda partial: write_first_frame(video, partial, "mjpeg", POSTER_WIDTH)) else None
    except Exception:  # not a video, unreadable, unwritable: the page shows it without a poster
        return None
