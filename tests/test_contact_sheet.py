"""The batch runner's contact sheet, OUT/index.html (vap_batch/contact_sheet.py): rendering (escaping,
relative links, failed rows, --no-html) without a server, then a real batch against the real ComfyUI
with the tiny models opened from file:// in headless Chromium (tests/browser/check_contact_sheet.mjs),
every request that is not file:// blocked. The browser test is skipped, with the reason, where
Chromium, node or `npm ci` in tools/browser is missing."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from devkit import comfy_server as harness
from devkit.browser import browser_missing
from devkit.clips import write_clip
from tests.helpers import SCREENSHOTS
from vap_batch.__main__ import main
from vap_batch.contact_sheet import ContactSheet, write_contact_sheet
from vap_batch.jobs import Job, read_jobs
from vap_batch.report import Result
from vap_batch.workflow import load_workflow

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "browser" / "check_contact_sheet.mjs"
XSS = "<script>alert(1)</script>"
HEADER = "name,reference,target,reference_caption,target_caption,seed"


def clip(path: Path, frames: int = 5, size: int = 32) -> Path:
    """A small mpeg4 clip of flat grey frames getting lighter."""
    return write_clip(path, [np.full((size, size, 3), 40 * i % 255, dtype=np.uint8) for i in range(frames)],
                      codec="mpeg4", fps=8)


# ---------------------------------------------------------------- rendering, no server

def test_sheet_escapes_text_links_media_relatively_and_shows_failed_rows_in_red(tmp_path):
    media, out = tmp_path / "my media", tmp_path / "out"
    media.mkdir()
    out.mkdir()
    clip(media / "ref.mp4")
    (media / "horse.png").write_bytes(b"\x89PNG not really")
    clip(out / "good.mp4")
    jobs = [Job(row=1, name="good", reference=media / "ref.mp4", target=media / "horse.png", reference_caption=XSS,
                target_caption='a "horse" & <b>co</b>', overrides={"seed": 7, "steps": 12}),
            Job(row=2, name="bad", reference=media / "bad.mp4", target=media / "horse.png", reference_caption="broken",
                target_caption="a horse"),
            Job(row=3, name="later", reference=media / "ref.mp4", target=media / "horse.png",
                reference_caption="not run yet", target_caption="x")]
    results = [Result(1, "good", "ok", 12.34, str(out / "good.mp4")),
               Result(2, "bad", "failed", 0.5, "", "VAPLoadReferenceVideo (14): <bad.mp4> cannot be read as a video")]
    html = write_contact_sheet(out, jobs, results, "http://127.0.0.1:8188", default_seed=42).read_text()

    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &#34;horse&#34; &amp; &lt;b&gt;co&lt;/b&gt;" in html
    assert '<div class="error">VAPLoadReferenceVideo (14): &lt;bad.mp4&gt; cannot be read as a video</div>' in html
    assert ".error { color: #c00;" in html
    # media linked where they lie, relative to OUT (URL-quoted); the result and its poster inside OUT
    assert 'src="../my%20media/ref.mp4"' in html and 'src="../my%20media/horse.png"' in html
    assert '<video src="good.mp4" poster=".posters/good.jpg" muted loop playsinline preload="none"' in html
    assert (out / ".posters" / "good.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert sorted(p.name for p in out.iterdir()) == [".posters", "good.mp4", "index.html"]  # no media copied
    assert str(tmp_path) not in html  # no absolute paths: the folder can be zipped with its media
    assert "http" not in html.replace("http://127.0.0.1:8188", "")  # nothing from the network
    # seed and the overrides; the default seed marked; the pending row there
    assert "seed 7" in html and "steps = 12" in html and "12.3 s" in html
    assert 'seed 42 <span class="muted">(default)</span>' in html
    assert html.count('<tr class="job ') == 3 and '<tr class="job pending" data-row="3"' in html
    assert "1 ok, 1 failed, 0 skipped, 1 pending" in html
    assert not (out / "index.html.partial").exists()


def test_the_sheet_reads_the_default_seed_from_the_workflow(tmp_path):
    workflow = load_workflow()
    sheet = ContactSheet(tmp_path, [], "http://x", workflow)
    assert sheet.default_seed == workflow["16"]["inputs"]["seed"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


@pytest.mark.parametrize("flags, expected", [([], [".posters", "index.html", "report.json"]),
                                             (["--no-html"], ["report.json"])], ids=["default", "--no-html"])
def test_every_run_writes_the_sheet_unless_no_html(tmp_path, flags, expected, capsys):
    clip(tmp_path / "ref.mp4")
    (tmp_path / "jobs.csv").write_text(f"{HEADER}\nonly,ref.mp4,ref.mp4,{XSS},a horse,5\n")
    out = tmp_path / "out"
    status = main([str(tmp_path / "jobs.csv"), "--out", str(out), "--server", f"http://127.0.0.1:{closed_port()}",
                   "--retries", "0", *flags])
    assert status == 1  # the row failed: nothing listens there
    assert sorted(p.name for p in out.iterdir()) == expected
    if not flags:
        html = (out / "index.html").read_text()
        assert '<tr class="job failed"' in html and "server unreachable" in html and XSS not in html
        assert "contact sheet: " in capsys.readouterr().out


# ---------------------------------------------------------------- a real batch, in a real browser

def check_page(index: Path, screenshot: str = "-", *flags: str) -> dict:
    proc = subprocess.run(["node", str(CHECK), str(index), screenshot, *flags], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def batch(request, tmp_path_factory):
    """python -m vap_batch against the real server: two good rows (one caption an HTML script), one bad."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    server, (_, _, base) = request.getfixturevalue("server"), request.getfixturevalue("comfy")
    tmp = tmp_path_factory.mktemp("contact_sheet")
    media = harness.batch_media(base, tmp / "media")
    (media / "jobs.csv").write_text(
        f"{HEADER},steps\n"
        f"horse,ref.mp4,target.png,a sneaker inflates {XSS},a horse inflates and rises,1,2\n"
        "from_video,ref.mp4,target_clip.mp4,a sneaker inflates,a clip's first frame inflates,2,\n"
        "bad,bad.mp4,target.png,broken reference,a horse,3,\n")
    workflow = tmp / "tiny_workflow.json"
    workflow.write_text(json.dumps(harness.tiny_workflow(steps=2)))
    out = tmp / "out"
    run = subprocess.run([sys.executable, "-m", "vap_batch", str(media / "jobs.csv"), "--out", str(out),
                          "--server", server.url, "--workflow", str(workflow)],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 1, run.stdout + run.stderr  # the bad row failed
    return media, out, server.url


def test_sheet_of_a_real_batch_plays_its_videos_offline_in_chromium(batch):
    media, out, url = batch
    report = {r["name"]: r for r in json.loads((out / "report.json").read_text())}
    assert [report[n]["status"] for n in ("horse", "from_video", "bad")] == ["ok", "ok", "failed"]
    SCREENSHOTS.mkdir(exist_ok=True)
    result = check_page(out / "index.html", str(SCREENSHOTS / "contact_sheet.png"))

    assert result["blocked"] == [], "requests that were not file://"
    assert result["dialogs"] == [], "the caption's script ran"
    assert result["page_errors"] == []
    assert result["scripts"] == 1  # the page's own; the caption's <script> is text
    assert [(r["name"], r["status"]) for r in result["rows"]] == [("horse", "ok"), ("from_video", "ok"), ("bad", "failed")]
    assert any(f"a sneaker inflates {XSS}" in caption for caption in result["captions"])
    videos = {v["row"]: v for v in result["videos"]}
    assert sorted(videos) == ["from_video", "horse"]
    for name, v in videos.items():
        assert v["src"] == f"{name}.mp4" and v["poster"] == f".posters/{name}.jpg", v
        assert v["readyState"] >= 2 and v["duration"] > 0 and v["error"] is None, v
        assert v["muted"] and v["loop"] and not v["paused"], v
        assert v["after"] != v["before"] and v["frames_after"] > v["frames_before"], f"{name} does not play: {v}"
        assert (out / ".posters" / f"{name}.jpg").read_bytes()[:2] == b"\xff\xd8"
    (failed,) = result["failed"]
    assert failed["name"] == "bad" and failed["visible"] and failed["color"] == "rgb(204, 0, 0)", failed
    assert failed["message"] == report["bad"]["message"] and "cannot be read as a video" in failed["message"]
    assert result["failed_only_visible"] == ["bad"]
    assert result["sorted_by_name"] == ["bad", "from_video", "horse"]
    times = [seconds for _, seconds in result["sorted_by_time"]]
    assert times == sorted(times, reverse=True)
    html = (out / "index.html").read_text()
    assert 'src="../media/ref.mp4"' in html and 'src="../media/target.png"' in html  # where they lie
    assert sorted(p.name for p in out.iterdir()) == [".posters", "from_video.mp4", "horse.mp4", "index.html", "report.json"]
    assert (SCREENSHOTS / "contact_sheet.png").stat().st_size > 0


def test_a_sheet_of_200_rows_loads_from_file(batch, tmp_path):
    """200 rows over the batch's media (the same few references, targets and results, a poster per
    row as a run of 200 would have); prints the time to the load event and the page's size (no timing assertion)."""
    media, out, url = batch
    jobs = read_jobs(media / "jobs.csv")
    report = {r["name"]: r for r in json.loads((out / "report.json").read_text())}
    big = tmp_path / "out"
    big.mkdir()
    many_jobs, results = [], []
    for i in range(200):
        job = jobs[i % len(jobs)]
        entry = report[job.name]
        name = f"{i + 1:03d}_{job.name}"
        many_jobs.append(replace(job, row=i + 1, name=name))
        results.append(Result(i + 1, name, entry["status"], entry["seconds"] + i / 100, entry["output"], entry["message"]))
    index = write_contact_sheet(big, many_jobs, results, url, default_seed=0)
    result = check_page(index, "-", "--load-only")
    assert len(result["rows"]) == 200 and result["blocked"] == [] and result["dialogs"] == []
    print(f"\n200-row contact sheet: {index.stat().st_size} bytes of HTML, load event after "
          f"{result['load_ms']:.0f} ms (DOMContentLoaded {result['dom_content_loaded_ms']:.0f} ms)")
