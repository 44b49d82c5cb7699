import json
import os

import pytest

from devkit import comfy_server as harness
from devkit.browser import browser_missing
from devkit.checkpoints import Case, write_released
from vap_core import VAPTransformer


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With VAP_NO_SKIPS=1 (CI) a skipped test fails: there, everything it needs is installed."""
    report = (yield).get_result()
    if os.environ.get("VAP_NO_SKIPS") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run (VAP_NO_SKIPS=1): {report.longrepr}"


@pytest.fixture(scope="session")
def case_small():
    return Case("case_small")


@pytest.fixture(scope="session")
def case_reflen():
    return Case("case_reflen")


@pytest.fixture(scope="session")
def case_comfy():
    return Case("case_comfy")


@pytest.fixture(scope="session")
def released_small(case_small, tmp_path_factory):
    """case_small's model as a released checkpoint folder (single file)."""
    return write_released(tmp_path_factory.mktemp("released_small"), case_small.released_weights(), case_small.config)


@pytest.fixture(scope="module")
def model(released_small):
    """released_small loaded as a VAPTransformer, one per test module."""
    return VAPTransformer.from_checkpoint(released_small)


@pytest.fixture(scope="session")
def comfyui():
    """(ComfyUI folder, the Python that runs it), or the test is skipped saying why there is none."""
    root, why = harness.find_comfyui()
    if root is None:
        pytest.skip(why)
    python, why = harness.comfy_python(root)
    if python is None:
        pytest.skip(why)
    return root, python


@pytest.fixture(scope="session")
def comfy(comfyui, tmp_path_factory):
    """(ComfyUI folder, its Python, a --base-directory with the pack and tiny models), one per test session."""
    root, python = comfyui
    base = tmp_path_factory.mktemp("comfy_base")
    harness.prepare_base(base, python, root)
    return root, python, base


@pytest.fixture(scope="session")
def server(comfy):
    """A real ComfyUI server with the real pack on a loopback port, shared by the test modules."""
    root, python, base = comfy
    srv = harness.Server(root, python, base)
    yield srv
    srv.stop()


@pytest.fixture
def media(comfy, tmp_path):
    """The tiny media (harness.batch_media) and the tiny workflow (workflow.json) in a folder for job lists."""
    folder = harness.batch_media(comfy[2], tmp_path / "media")
    (folder / "workflow.json").write_text(json.dumps(harness.tiny_workflow(steps=2)))
    return folder


@pytest.fixture(scope="session", params=["pinned", "newest"])
def frontend(request, comfy, tmp_path_factory):
    """A ComfyUI server with its own pinned frontend, or with the newest one (harness.NEWEST_FRONTEND), on a
    base directory of its own with the models, custom nodes and input of `comfy`'s."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    root, python, base = comfy
    front_end_root = None
    if request.param == "newest":
        front_end_root = harness.newest_frontend(root)
        if front_end_root is None:
            pytest.skip(f"comfyui-frontend-package {harness.NEWEST_FRONTEND} is not installed beside {root}/.venv: "
                        "run tools/setup_env.sh on it")
    own = harness.sharing_base(base, tmp_path_factory.mktemp(f"frontend_{request.param}"), "models", "custom_nodes", "input")
    server = harness.Server(root, python, own, front_end_root=front_end_root)
    yield server
    server.stop()
