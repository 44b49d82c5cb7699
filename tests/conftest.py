import os

import pytest

from tools import comfy_server as harness
from tools.checkpoints import Case, write_released


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
    return write_released(tmp_path_factory.mktemp("released_small"), case_small.group("official"), case_small.config)


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


@pytest.fixture(scope="module")
def comfy(comfyui, tmp_path_factory):
    """(ComfyUI folder, its Python, a --base-directory with the pack and tiny models), one per test module."""
    root, python = comfyui
    base = tmp_path_factory.mktemp("comfy_base")
    harness.prepare_base(base, python, root)
    return root, python, base


@pytest.fixture(scope="module")
def server(comfy):
    """A real ComfyUI server with the real pack on a loopback port."""
    root, python, base = comfy
    srv = harness.Server(root, python, base)
    yield srv
    srv.stop()
