"""What a run leaves and shows: each row's Result, the output folder (a row whose video is there is
skipped), report.json, and the progress bars (or plain lines)."""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from vap_core.suffixes import VIDEO_SUFFIXES  # a row's output is a video
from vap_core.whole_file import write_whole

from .client import OutputError
from .jobs import Job


@dataclass
class Result:
    row: int
    name: str
    status: str  # ok | failed | skipped
    seconds: float
    output: str
    message: str = ""
    server: str = ""  # the one that ran it


def finished_output(out_dir: Path, name: str) -> Path | None:
    """The job's video, OUT/<name><video suffix>, if it is there (downloads land as .partial until whole)."""
    return next((p for s in VIDEO_SUFFIXES if (p := out_dir / f"{name}{s}").is_file()), None)


def check_output_folder(out_dir: Path):
    """Create the folder if missing and make sure files can be written in it, before any job runs."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out_dir, prefix=".vap_batch_probe_").close()
    except OSError as err:
        raise OutputError(f"cannot write to the output folder {out_dir} ({err.strerror or err}); make it writable "
                          "or choose another --out. Nothing was queued.") from None


def write_report(path: Path, results: list[Result]):
    try:
        write_whole(path, lambda partial: partial.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n"))
    except OSError as err:
        raise OutputError(f"cannot write {path} ({err.strerror or err}); fix the output folder and run again "
                          "(finished rows are skipped).") from None


class Progress:
    """Progress on stderr (or `stream`): a bar for the whole list and one per running job (its sampling
    steps; with several servers, named after its server), drawn by tqdm; where the stream is not a
    terminal (a log file, CI) plain lines instead."""

    def __init__(self, total: int, stream=None):
        self.stream, self.total, self.finished = stream or sys.stderr, total, 0
        # disable=None: no bars where the stream is not a terminal
        self.overall = tqdm(total=total, desc="jobs", unit="job", file=self.stream, disable=None, dynamic_ncols=True)
        self.jobs: dict[int, tqdm] = {}  # row -> its bar

    def _line(self, text: str):
        tqdm.write(text, file=self.stream)  # above the bars, which are drawn again below it

    def start(self, job: Job, server: str = ""):
        self.drop(job.row)
        desc = f"row {job.row} {job.name}" + (f" on {server}" if server else "")
        # mininterval=0: every step the server reports is drawn (they come seconds apart, not thousands a second)
        self.jobs[job.row] = tqdm(total=None, desc=desc, unit="step", leave=False, file=self.stream, disable=None,
                                  dynamic_ncols=True, mininterval=0)
        if self.overall.disable:
            self._line(f"running: {desc}")

    def step(self, job: Job, value: int, maximum: int):
        bar = self.jobs.get(job.row)
        if bar is None or bar.disable:
            return
        if bar.total != maximum:  # each node that reports progress (sampler, decoder) counts on its own
            bar.reset(total=maximum)
        bar.update(value - bar.n)

    def note(self, text: str):
        self._line(text)

    def drop(self, row: int):
        """Remove the row's bar (its job ended, or went back to the list)."""
        bar = self.jobs.pop(row, None)
        if bar is not None:
            bar.close()

    def done(self, result: Result):
        self.drop(result.row)
        self.finished += 1
        detail = f" ({result.message})" if result.message else ""
        self._line(f"{result.status:>7}: row {result.row} {result.name} {result.seconds:.0f} s{detail}"
                   f" [{self.finished}/{self.total}]")
        self.overall.update(1)

    def close(self):
        for bar in self.jobs.values():
            bar.close()
        self.overall.close()
