"""The batch runner without a server: reading job lists, filling the workflow (reference guidance and
a second reference too), resuming, sharing the jobs among servers, progress, headers and the checks of
the command line."""
from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import aiohttp
import pytest

from vap_batch.__main__ import HeaderError, main, request_headers
from vap_batch.client import ServerError
from vap_batch.jobs import Job, JobError, read_jobs
from vap_batch.report import Progress, Result, finished_output
from vap_batch.runner import run_jobs
from vap_batch.workflow import (FIELDS, GUIDANCE_WORKFLOW, TWO_REFERENCES_WORKFLOW, WorkflowError, check_workflow, fill,
                                job_graph, load_workflow)

HEADER = "reference,target,reference_caption,target_caption"


def write(path, text):
    path.write_text(text)
    return path


def test_csv_rows_become_jobs_with_typed_overrides(tmp_path):
    jobs = read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},seed,cfg,name\n"
                           "ref.mp4,img.png,a balloon rises,a horse rises,7,4.5,horse balloon!\n"
                           "/abs/ref2.mp4,clip.mp4,b,c,,,\n"))
    assert [j.name for j in jobs] == ["horse_balloon", "0002_clip_ref2"]
    assert jobs[0].reference == tmp_path / "ref.mp4" and jobs[1].reference.as_posix() == "/abs/ref2.mp4"
    assert jobs[0].overrides == {"seed": 7, "cfg": 4.5} and jobs[1].overrides == {}


def test_json_list_is_read_like_csv(tmp_path):
    rows = [{"reference": "r.mp4", "target": "t.png", "reference_caption": "x", "target_caption": "y", "steps": 20}]
    (job,) = read_jobs(write(tmp_path / "jobs.json", json.dumps(rows)))
    assert job.overrides == {"steps": 20} and job.target == tmp_path / "t.png"


def test_every_wrongly_typed_field_of_every_json_row_is_reported_at_once(tmp_path):
    rows = [{"reference": 5, "target": 7, "target_caption": "y", "steps": "x"},
            {"reference": "r.mp4", "target": "t.png", "reference_caption": ["a"], "target_caption": "y", "seed": True}]
    with pytest.raises(JobError) as err:
        read_jobs(write(tmp_path / "jobs.json", json.dumps(rows)))
    assert str(err.value).splitlines()[1:] == [
        "  row 1: reference=5 is not text (in JSON, put it in quotes); target=7 is not text (in JSON, put it in quotes); "
        "reference_caption missing; steps='x' is not a whole number.",
        "  row 2: reference_caption=['a'] is not text (in JSON, put it in quotes); seed=True is not a whole number."]


@pytest.mark.parametrize("text, message", [
    (f"{HEADER}\nr.mp4,t.png,,y\n", "row 1: reference_caption missing"),
    (f"{HEADER},colour\nr.mp4,t.png,x,y,red\n", "unknown column(s) ['colour']"),
    (f"{HEADER},steps\nr.mp4,t.png,x,y,many\n", "steps='many' is not a whole number"),
    (f"{HEADER},name\nr.mp4,t.png,x,y,a\nr.mp4,t.png,x,y,a\n", "repeated: ['a']"),
    (f"{HEADER}\n", "has no jobs"),
])
def test_bad_job_lists_say_which_row_and_column(tmp_path, text, message):
    with pytest.raises(JobError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        read_jobs(write(tmp_path / "jobs.csv", text))


@pytest.mark.parametrize("file, data, message", [
    ("jobs.csv", f"{HEADER},seed\nr.mp4,t.png,x,y,inf\n", "row 1: seed='inf' is not a whole number."),
    ("jobs.csv", f"{HEADER},steps\nr.mp4,t.png,x,y,2.7\n", "row 1: steps='2.7' is not a whole number."),
    ("jobs.csv", f"{HEADER},cfg\nr.mp4,t.png,x,y,nan\n", "row 1: cfg='nan' is not a finite number."),
    ("jobs.json", '[{"reference": "r.mp4", "target": "t.png", "reference_caption": "x", "target_caption": "y", '
                  '"cfg": NaN, "seed": Infinity}]', "row 1: seed=inf is not a whole number; cfg=nan is not a finite number."),
    ("jobs.csv", f"{HEADER}\nr.mp4,t.png,a horse, rising,a cat\n",
     "row 1: more fields than the header has columns ('a cat' left over); put text that contains commas in double quotes."),
    ("jobs.csv", f"{HEADER}\nr.mp4,t.png,caf\xe9,y\n".encode("latin-1"), "jobs.csv is not UTF-8 text (byte 0xe9 on line 2)"),
], ids=["seed=inf", "steps=2.7", "cfg=nan", "json NaN and Infinity", "unquoted comma", "latin-1 file"])
def test_bad_values_and_files_are_errors_naming_row_column_and_value(tmp_path, file, data, message):
    path = tmp_path / file
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(JobError) as err:
        read_jobs(path)
    assert message in str(err.value)


def test_every_bad_row_is_named_at_once_and_whole_numbers_are_exact(tmp_path):
    with pytest.raises(JobError) as err:
        read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},steps,cfg\n"
                        "r.mp4,t.png,x,y,20,4.5\nr.mp4,t.png,x,y,2.7,nan\nr.mp4,t.png,x,y,10,inf\n"))
    assert str(err.value).splitlines()[1:] == ["  row 2: steps='2.7' is not a whole number; cfg='nan' is not a finite number.",
                                               "  row 3: cfg='inf' is not a finite number."]
    (job,) = read_jobs(write(tmp_path / "ok.csv", f"{HEADER},seed,steps\nr.mp4,t.png,x,y,18446744073709551615,20.0\n"))
    assert job.overrides == {"seed": 2**64 - 1, "steps": 20}  # not through a float, which would round the seed


def test_every_field_lands_on_its_node_and_input():
    graph = load_workflow()
    values = {field: f"value of {field}" for field in FIELDS}
    filled = fill(graph, values)
    for field, targets in FIELDS.items():
        for node, name in targets:
            assert filled[node]["inputs"][name] == values[field]
    assert graph["8"]["inputs"]["text"] != values["target_caption"]  # the loaded workflow is left as it was


def test_a_workflow_without_the_nodes_is_refused_clearly(tmp_path):
    graph = load_workflow()
    del graph["14"]
    graph["16"]["inputs"].pop("seed")
    path = write(tmp_path / "wf.json", json.dumps(graph))
    with pytest.raises(WorkflowError, match=r"node 14 input 'video' \(for reference\).*node 16 input 'seed'"):
        load_workflow(path)


def test_finished_rows_are_skipped_and_partial_downloads_are_not_finished(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "done.mp4").write_bytes(b"video")
    (out / "cut.mp4.partial").write_bytes(b"vid")
    assert finished_output(out, "done") == out / "done.mp4"
    assert finished_output(out, "cut") is None
    jobs = read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},name\nr.mp4,t.png,x,y,done\n"))
    results = asyncio.run(run_jobs(jobs, [], workflow={}, out_dir=out, progress=quiet(1)))
    assert [r.status for r in results] == ["skipped"]
    assert json.loads((out / "report.json").read_text())[0]["status"] == "skipped"


def quiet(total: int) -> Progress:
    return Progress(total, stream=open("/dev/null", "w"))


class _DroppingSocket:
    async def receive(self, timeout=None):
        raise ConnectionError("stream dropped")

    async def close(self):
        pass


class _Server:
    """Stands in for the HTTP side of vap_batch's own client (not for ComfyUI): the job runs, the
    progress stream drops, the result is there when asked."""

    url = "http://127.0.0.1:8188"

    def __init__(self):
        self.queued_prompts, self.asked = 0, 0

    async def get_json(self, path):
        return {}

    async def upload(self, path):
        return f"vap_batch/{path.name}"

    async def websocket(self):
        return _DroppingSocket()

    async def queue(self, graph):
        self.queued_prompts += 1
        return "p1"

    async def queued(self, prompt_id):
        return self.asked < 2  # running until its history is asked for the second time

    async def history(self, prompt_id):
        self.asked += 1
        if self.asked < 2:
            return None
        return {"status": {"completed": True, "messages": []},
                "outputs": {"19": {"images": [{"filename": "vap_00001.mp4", "subfolder": "", "type": "output"}]}}}

    async def download(self, item, dest):
        dest.write_bytes(b"video")


def test_a_dropped_progress_stream_waits_for_the_result_instead_of_queueing_again(tmp_path):
    for name in ("r.mp4", "t.png"):
        (tmp_path / name).write_bytes(b"x")
    jobs = read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},name\nr.mp4,t.png,x,y,one\n"))
    server = _Server()
    results = asyncio.run(run_jobs(jobs, [server], load_workflow(), tmp_path / "out", progress=quiet(1)))
    assert [r.status for r in results] == ["ok"] and server.queued_prompts == 1
    assert (tmp_path / "out" / "one.mp4").read_bytes() == b"video"


def test_outputs_are_matched_by_their_exact_name(tmp_path):
    """OUT/<name><video suffix> only: job x is not done because x.2.mp4 (or x.png, x_2.mp4) is there."""
    out = tmp_path / "out"
    out.mkdir()
    for other in ("x.2.mp4", "x.png", "x.json", "x.mp4.partial", "x_2.mp4", "xx.webm"):
        (out / other).write_bytes(b"other")
    (out / "y.webm").write_bytes(b"video")
    assert finished_output(out, "x") is None
    assert finished_output(out, "x.2") == out / "x.2.mp4" and finished_output(out, "y") == out / "y.webm"
    for name in ("r.mp4", "t.png"):
        (tmp_path / name).write_bytes(b"x")
    jobs = read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},name\nr.mp4,t.png,x,y,x.2\nr.mp4,t.png,x,y,x\n"))
    results = asyncio.run(run_jobs(jobs, [_Server()], load_workflow(), out, progress=quiet(2)))
    assert [(r.name, r.status) for r in results] == [("x.2", "skipped"), ("x", "ok")]
    assert (out / "x.mp4").read_bytes() == b"video" and (out / "x.2.mp4").read_bytes() == b"other"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_bars_on_a_terminal_and_writes_plain_lines_elsewhere():
    job = Job(row=1, name="horse", reference=Path("r.mp4"), target=Path("t.png"), reference_caption="x", target_caption="y")
    streams = {"log": io.StringIO(), "terminal": _Terminal()}
    for stream in streams.values():
        progress = Progress(2, stream=stream)
        progress.start(job)
        progress.step(job, 1, 4)
        progress.step(job, 4, 4)
        progress.note("a note")
        progress.done(Result(1, "horse", "ok", 3.2, "out/horse.mp4"))
        progress.close()
    assert streams["log"].getvalue().splitlines() == ["running: row 1 horse", "a note", "     ok: row 1 horse 3 s [1/2]"]
    drawn = streams["terminal"].getvalue()
    assert "row 1 horse:  25%" in drawn and "| 1/4 [" in drawn and "| 4/4 [" in drawn  # the job's sampling steps
    assert "jobs:   0%" in drawn and "jobs:  50%" in drawn and "| 1/2 [" in drawn  # the whole list
    assert "\r     ok: row 1 horse 3 s [1/2]\n" in drawn and "a note\n" in drawn  # above the bars


def test_with_several_servers_a_jobs_progress_names_its_server():
    job, log = Job(row=1, name="horse", reference=Path("r.mp4"), target=Path("t.png"), reference_caption="x", target_caption="y"), io.StringIO()
    progress = Progress(1, stream=log)
    progress.start(job, "http://gpu1:8188")
    progress.done(Result(1, "horse", "ok", 3.2, "out/horse.mp4", server="http://gpu1:8188"))
    progress.close()
    assert log.getvalue().splitlines() == ["running: row 1 horse on http://gpu1:8188", "     ok: row 1 horse 3 s [1/1]"]


def test_headers_come_from_the_command_line_and_the_token_and_errors_never_show_a_value():
    assert request_headers([], " tok ") == {"Authorization": "Bearer tok"}
    assert request_headers(["X-Team: vap", "authorization: Basic abc"], "tok") == {"X-Team": "vap",
                                                                                   "authorization": "Basic abc"}
    for bad in ("Bearer secret-value", "X Y: secret-value", "X-Empty:"):
        with pytest.raises(HeaderError) as err:
            request_headers(["X-Id: 1", bad], None)
        assert "--header number 2 is not 'Name: value'" in str(err.value) and "secret-value" not in str(err.value)


def test_a_bad_header_or_ca_bundle_stops_the_run_before_anything_is_contacted(tmp_path, capsys):
    jobs = write(tmp_path / "jobs.csv", f"{HEADER}\nr.mp4,t.png,x,y\n")
    out = tmp_path / "out"
    assert main([str(jobs), "--out", str(out), "--header", "Bearer secret-value"]) == 2
    (tmp_path / "not.pem").write_text("not a certificate\n")
    assert main([str(jobs), "--out", str(out), "--server", "https://127.0.0.1:9", "--ca-bundle", str(tmp_path / "not.pem")]) == 2
    assert main([str(jobs), "--out", str(out), "--server", "127.0.0.1:8188"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: --header number 1 is not 'Name: value' (a name, a colon, then the value; the value is not shown here)."
    assert err[1].startswith(f"error: cannot use --ca-bundle {tmp_path / 'not.pem'} (") and "PEM" in err[1]
    assert err[2] == "error: --server 127.0.0.1:8188: give the server's address as http://HOST:PORT or https://HOST:PORT."
    assert not out.exists()


# ---------------------------------------------------------------- reference guidance and a second reference

GUIDANCE = json.loads(GUIDANCE_WORKFLOW.read_text())
TWO_REFERENCES = json.loads(TWO_REFERENCES_WORKFLOW.read_text())


def test_a_reference_cfg_row_is_the_guidance_workflow_with_seed_steps_and_cfg_on_its_nodes():
    basic = load_workflow()
    prefix = GUIDANCE["19"]["inputs"]["filename_prefix"]
    assert job_graph(basic, {"reference_cfg": 1.0, "output_prefix": prefix}) == GUIDANCE  # node for node
    graph = job_graph(basic, {"reference_cfg": 2.5, "seed": 7, "steps": 12, "cfg": 3.5, "frames": 17})
    assert graph["16"]["class_type"] == "VAPReferenceGuider" and "seed" not in graph["16"]["inputs"]
    assert graph["16"]["inputs"]["reference_cfg"] == 2.5 and graph["16"]["inputs"]["cfg"] == 3.5
    assert graph["21"]["inputs"]["noise_seed"] == 7 and graph["23"]["inputs"]["steps"] == 12
    assert graph["13"]["inputs"]["length"] == graph["14"]["inputs"]["frames"] == 17
    assert basic == load_workflow()  # the workflow is left as it was


def test_a_reference_2_row_is_the_two_reference_workflow_like_the_first_reference():
    basic = load_workflow()
    values = {"reference_2": TWO_REFERENCES["25"]["inputs"]["video"],
              "reference_2_caption": TWO_REFERENCES["26"]["inputs"]["text"],
              "output_prefix": TWO_REFERENCES["19"]["inputs"]["filename_prefix"]}
    assert job_graph(basic, values) == TWO_REFERENCES  # node for node
    graph = job_graph(basic, {**values, "frames": 17, "seed": 7, "reference_negative_prompt": "first's",
                              "reference_2_negative_prompt": "second's"})
    assert graph["25"]["inputs"]["frames"] == graph["14"]["inputs"]["frames"] == 17  # both references alike
    assert graph["20"]["inputs"]["text"] == "first's" and graph["27"]["inputs"]["text"] == "second's"
    assert graph["16"]["class_type"] == "KSampler" and graph["16"]["inputs"]["seed"] == 7
    # without its own, the second reference's negative prompt is the first's
    assert job_graph(basic, {**values, "reference_negative_prompt": "first's"})["27"]["inputs"]["text"] == "first's"


def test_both_in_one_row_give_the_guider_the_second_references_conditioning():
    graph = job_graph(load_workflow(), {"reference_cfg": 2.0, "seed": 3, "steps": 4, "reference_2": "two.mp4",
                                        "reference_2_caption": "the second", "output_prefix": "p"})
    expected = {**GUIDANCE, **{n: TWO_REFERENCES[n] for n in ("25", "26", "27", "28")}}
    expected = json.loads(json.dumps(expected))
    expected["16"]["inputs"].update(positive=["28", 0], negative=["28", 1], reference_cfg=2.0)
    expected["21"]["inputs"]["noise_seed"], expected["23"]["inputs"]["steps"] = 3, 4
    expected["25"]["inputs"]["video"], expected["26"]["inputs"]["text"] = "two.mp4", "the second"
    expected["19"]["inputs"]["filename_prefix"] = "p"
    assert graph == expected


def test_a_basic_row_fills_the_workflow_as_it_is():
    values = {"seed": 7, "steps": 12, "cfg": 3.5, "reference": "r.mp4", "output_prefix": "p"}
    assert job_graph(load_workflow(), values) == fill(load_workflow(), values)


@pytest.mark.parametrize("columns, values, message", [
    ("reference_2", "two.mp4", "row 1: reference_2 is given without reference_2_caption; give the second "
                               "reference's caption (what it shows, as reference_caption for the first)."),
    ("reference_2_caption", "a lantern", "row 1: reference_2_caption is given without reference_2 (the second "
                                         "reference video); give it, or leave reference_2_caption empty."),
    ("reference_2_negative_prompt", "blurry", "row 1: reference_2_negative_prompt is given without reference_2"),
    ("reference_cfg", "strong", "row 1: reference_cfg='strong' is not a finite number."),
])
def test_second_reference_and_guidance_columns_are_checked_when_the_list_is_read(tmp_path, columns, values, message):
    with pytest.raises(JobError) as err:
        read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},{columns}\nr.mp4,t.png,x,y,{values}\n"))
    assert message in str(err.value)


def test_the_new_columns_are_read_per_row(tmp_path):
    jobs = read_jobs(write(tmp_path / "jobs.csv", f"{HEADER},reference_cfg,reference_2,reference_2_caption\n"
                           "r.mp4,t.png,x,y,1.5,,\nr.mp4,t.png,x,y,,refs/two.mp4,a lantern\nr.mp4,t.png,x,y,,,\n"))
    assert jobs[0].overrides == {"reference_cfg": 1.5} and jobs[0].reference_2 is None
    assert jobs[1].reference_2 == tmp_path / "refs" / "two.mp4" and jobs[1].reference_2_caption == "a lantern"
    assert jobs[2].overrides == {} and jobs[2].reference_2 is None


def custom_workflow(tmp_path, change) -> Path:
    graph = load_workflow()
    change(graph)
    return write(tmp_path / "mine.json", json.dumps(graph))


@pytest.mark.parametrize("change, message", [
    (lambda g: g["16"].update(class_type="KSamplerAdvanced"),
     "rows 1, 3: reference guidance replaces the KSampler 16 by the reference guider, and node 16 here is "
     "KSamplerAdvanced."),
    (lambda g: g.update({"22": {"class_type": "Note", "inputs": {}}}),
     "rows 1, 3: reference guidance adds nodes 21-24, and this workflow already has node(s) 22; renumber those "
     "in yours."),
    (lambda g: g["15"].update(class_type="MyEncoder"),
     "row 2: a second reference is loaded and encoded like the first, by copies of nodes 10, 14, 15 and 20, and "
     "node 15 here is MyEncoder, not VAPEncodeReference."),
], ids=["no KSampler", "node 22 taken", "no VAPEncodeReference"])
def test_a_workflow_that_cannot_take_the_new_columns_stops_the_run_before_anything_is_contacted(
        tmp_path, capsys, change, message):
    jobs = write(tmp_path / "jobs.csv", f"{HEADER},reference_cfg,reference_2,reference_2_caption\n"
                 "r.mp4,t.png,x,y,1.5,,\nr.mp4,t.png,x,y,,two.mp4,a lantern\nr.mp4,t.png,x,y,2,,\nr.mp4,t.png,x,y,,,\n")
    workflow = custom_workflow(tmp_path, change)
    out = tmp_path / "out"
    assert main([str(jobs), "--out", str(out), "--workflow", str(workflow), "--server", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert f"error: the workflow {workflow} cannot run some rows; nothing was queued:\n  {message}\n" in err + "\n"
    assert not out.exists()
    plain = read_jobs(write(tmp_path / "plain.csv", f"{HEADER}\nr.mp4,t.png,x,y\n"))
    check_workflow(plain, load_workflow(workflow), workflow)  # rows without those columns run with it


# ---------------------------------------------------------------- several servers (stand-ins for vap_batch's client)

class _Answering:
    """Stands in for vap_batch's client of one server (not for ComfyUI): each job runs at once, or, for
    the first `fail` prompts, the connection drops as when the server dies; GET /queue answers (it came
    back) unless `dead`. It records the graphs queued on it."""

    def __init__(self, url, fail=0, dead=False):
        self.url, self.fail, self.dead, self.graphs, self.uploads = url, fail, dead, [], []

    async def get_json(self, path):
        if self.dead:
            raise aiohttp.ClientConnectionError("connection refused")
        return {}

    async def upload(self, path):
        self.uploads.append(path.name)
        return f"vap_batch/{path.name}"

    async def websocket(self):
        return _Socket(self)

    async def queue(self, graph):
        if self.dead or self.fail:
            self.fail -= 1
            raise aiohttp.ServerDisconnectedError()
        self.graphs.append(graph)
        return f"p{len(self.graphs)}"

    async def history(self, prompt_id):
        return {"status": {"completed": True, "messages": []},
                "outputs": {"19": {"images": [{"filename": f"{prompt_id}.mp4", "subfolder": "", "type": "output"}]}}}

    async def download(self, item, dest):
        dest.write_text(f"{self.url} {item['filename']}")


class _Socket:
    """The server's messages: after a moment, that its latest prompt ran."""

    def __init__(self, server):
        self.server = server

    async def receive(self, timeout=None):
        await asyncio.sleep(0.2)
        return {"type": "execution_success", "data": {"prompt_id": f"p{len(self.server.graphs)}"}}

    async def close(self):
        pass


def media(folder: Path, *names) -> Path:
    for name in ("r.mp4", "t.png", *names):
        (folder / name).write_bytes(name.encode())
    return folder


def run_on(servers, jobs, out, retries=3):
    return asyncio.run(run_jobs(jobs, servers, load_workflow(), out, retries=retries, progress=quiet(len(jobs))))


def test_servers_share_the_list_and_one_whose_connection_drops_gives_its_job_back_and_comes_back(tmp_path):
    names = [f"j{i}" for i in range(1, 9)]
    jobs = read_jobs(write(media(tmp_path) / "jobs.csv", f"{HEADER},name\n" + "".join(f"r.mp4,t.png,x,y,{n}\n" for n in names)))
    flaky, steady = _Answering("http://flaky", fail=1), _Answering("http://steady")
    results = run_on([flaky, steady], jobs, tmp_path / "out")
    assert [(r.name, r.status) for r in results] == [(n, "ok") for n in names]
    by_name = {r.name: r.server for r in results}
    assert by_name["j1"] == "http://steady"  # flaky took it first and dropped it
    assert "http://flaky" in by_name.values()  # it answered again and took jobs again
    assert len(flaky.graphs) + len(steady.graphs) == 8  # each row ran once
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.mp4"))
    assert outputs == [f"{n}.mp4" for n in names]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(r["name"], r["server"]) for r in report] == list(by_name.items())


def test_a_run_whose_servers_are_all_gone_ends_with_its_rows_failed_after_the_retries(tmp_path):
    jobs = read_jobs(write(media(tmp_path) / "jobs.csv", f"{HEADER},name\nr.mp4,t.png,x,y,one\nr.mp4,t.png,x,y,two\n"))
    results = run_on([_Answering("http://a", dead=True), _Answering("http://b", dead=True)], jobs, tmp_path / "out",
                     retries=1)
    assert [r.status for r in results] == ["failed", "failed"]
    for r in results:
        assert r.message == "server unreachable (Server disconnected); gave up after 2 attempts (--retries 1)", r.message


class _Expiring(_Answering):
    """A server whose token expires after `jobs` prompts: then it refuses every request (401)."""

    def __init__(self, url, jobs):
        super().__init__(url)
        self.left = jobs

    async def queue(self, graph):
        if self.left == 0:
            raise ServerError(f"the server at {self.url} refused the request (401 Unauthorized): it wants credentials.")
        self.left -= 1
        return await super().queue(graph)


def test_a_credentials_error_mid_run_retires_that_server_and_its_job_runs_on_another(tmp_path):
    names = [f"j{i}" for i in range(1, 7)]
    jobs = read_jobs(write(media(tmp_path) / "jobs.csv", f"{HEADER},name\n" + "".join(f"r.mp4,t.png,x,y,{n}\n" for n in names)))
    expiring, steady = _Expiring("http://expiring", jobs=1), _Answering("http://steady")
    log = io.StringIO()
    results = asyncio.run(run_jobs(jobs, [expiring, steady], load_workflow(), tmp_path / "out", retries=0,
                                   progress=Progress(len(jobs), stream=log)))  # retries 0: no attempt spent on it
    assert [(r.name, r.status) for r in results] == [(n, "ok") for n in names]
    assert len(expiring.graphs) == 1 and len(steady.graphs) == 5
    assert ("the server at http://expiring refused the request (401 Unauthorized): it wants credentials. "
            "http://expiring takes no more jobs in this run; row ") in log.getvalue()


def test_a_credentials_error_on_the_last_server_left_stops_the_run(tmp_path):
    jobs = read_jobs(write(media(tmp_path) / "jobs.csv", f"{HEADER},name\nr.mp4,t.png,x,y,one\nr.mp4,t.png,x,y,two\n"))
    with pytest.raises(ServerError, match="refused the request"):
        run_on([_Expiring("http://a", jobs=1)], jobs, tmp_path / "out")


def test_the_second_reference_is_uploaded_and_filled_in(tmp_path):
    jobs = read_jobs(write(media(tmp_path, "two.mp4") / "jobs.csv",
                           f"{HEADER},name,reference_cfg,reference_2,reference_2_caption\n"
                           "r.mp4,t.png,x,y,both,2,two.mp4,a lantern\nr.mp4,t.png,x,y,gone,,three.mp4,x\n"))
    server = _Answering("http://a")
    results = run_on([server], jobs, tmp_path / "out")
    assert [r.status for r in results] == ["ok", "failed"]
    assert results[1].message == f"reference_2 file {tmp_path / 'three.mp4'} does not exist"
    (graph,) = server.graphs
    assert graph["25"]["inputs"]["video"] == "vap_batch/two.mp4" and graph["26"]["inputs"]["text"] == "a lantern"
    assert graph["16"]["class_type"] == "VAPReferenceGuider" and graph["16"]["inputs"]["positive"] == ["28", 0]
    assert sorted(server.uploads) == ["r.mp4", "t.png", "two.mp4"]


def test_a_server_named_twice_is_refused(tmp_path, capsys):
    jobs = write(tmp_path / "jobs.csv", f"{HEADER}\nr.mp4,t.png,x,y\n")
    assert main([str(jobs), "--out", str(tmp_path / "out"), "--server", "http://a:1", "--server", "http://a:1/"]) == 2
    assert capsys.readouterr().err == ("error: --server http://a:1 is given twice; name each server once (it runs one "
                                       "job at a time).\n")


@pytest.mark.parametrize("codec,max_width,size", [("png", None, (64, 32)), ("mjpeg", 20, (40, 20))])
def test_a_video_targets_first_frame_and_a_poster_stand_as_players_show_them(tmp_path, codec, max_width, size):
    """A portrait phone clip (stored 64x32, shown turned 90 degrees clockwise) gives an upright still."""
    import numpy as np
    from PIL import Image

    from tests.helpers import edges, write_phone_clip
    from vap_batch.first_frame import write_first_frame
    clip = write_phone_clip(tmp_path / "phone.mp4", (0, 1, -1, 0))
    still = tmp_path / f"still.{codec}"
    assert write_first_frame(clip, still, codec, max_width)
    image = np.asarray(Image.open(still).convert("L")) / 255
    assert image.shape == size
    assert edges(image) == ("right", "top")
