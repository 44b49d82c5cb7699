"""The pack as the Comfy Registry publishes it: the archive `comfy node pack` / `comfy node publish`
build (git's file list minus .comfyignore), the pyproject.toml fields comfy-cli reads and checks, and
that archive alone in a real ComfyUI, a current one and one that looks older than the pack's floor."""
from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path
from xml.etree import ElementTree

import pathspec
import pytest
import tomllib

from devkit import comfy_server as harness

ROOT = Path(__file__).resolve().parent.parent
PACK = "ComfyUI-Video-As-Prompt"
NODE_IDS = {"VAPCheckpointLoader", "VAPExpertLoader", "VAPApplyExpert", "VAPLoadReferenceVideo", "VAPEncodeReference"}
SHIPPED = {"__init__.py", "nodes", "vap_core", "vap_batch", "workflows", "subgraphs", "requirements.txt",
           "pyproject.toml", "README.md", "LICENSE", "icon.svg"}
MAX_ARCHIVE_BYTES = 1_000_000  # ~0.3 MB now; all the repository's files: ~40 MB (tests/ fixtures)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COMFY = PYPROJECT["tool"]["comfy"]
OLD_COMFYUI_LINE = "ComfyUI-Video-As-Prompt needs ComfyUI >="


def ignore_spec(text: str) -> pathspec.PathSpec:
    """.comfyignore as comfy-cli reads it: lines stripped, blank lines and whole-line `#` comments skipped,
    the rest matched with pathspec's "gitwildmatch" (gitignore rules)."""
    lines = [line.strip() for line in text.splitlines()]
    with warnings.catch_warnings():  # comfy-cli 1.23's name for them, which pathspec 1.x calls deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return pathspec.PathSpec.from_lines("gitwildmatch", [line for line in lines if line and not line.startswith("#")])


def repository_files() -> list[str]:
    """git's files: tracked ones, and untracked ones git does not ignore (so a file not committed yet counts)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    return sorted({name for name in listed if name and (ROOT / name).is_file()})


def archive_files() -> list[str]:
    """What comfy-cli's zip_files puts in the archive ([tool.comfy] includes is empty, so nothing more)."""
    spec = ignore_spec((ROOT / ".comfyignore").read_text())
    return [name for name in repository_files() if not spec.match_file(name)]


def size(files) -> int:
    return sum((ROOT / name).stat().st_size for name in files)


def test_archive_holds_what_a_user_runs_and_is_small():
    assert COMFY["includes"] == []  # comfy-cli would add those folders to the archive too
    files = archive_files()
    assert {name.split("/")[0] for name in files} == SHIPPED
    assert {"nodes/__init__.py", "vap_core/__init__.py", "vap_batch/__main__.py",
            "workflows/api/vap_wan21_i2v_480p.json", "subgraphs/Video-As-Prompt (Wan 2.1 I2V).json"} <= set(files)
    everything = repository_files()
    assert size(files) < MAX_ARCHIVE_BYTES, f"archive {size(files)} bytes (the repository: {size(everything)})"


def requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [entry for entry in (re.sub(r"(^|\s)#.*", "", line).strip() for line in lines) if entry]


def test_pyproject_dependencies_are_requirements_txt():
    # the Registry records pyproject's list; ComfyUI-Manager and `comfy node install` pip-install requirements.txt
    assert PYPROJECT["project"]["dependencies"] == requirements()


def test_pyproject_has_what_the_registry_and_comfy_cli_check():
    project = PYPROJECT["project"]
    # the node id (https://docs.comfy.org/registry/specifications): < 100 characters, letters, digits and
    # single - _ . between them, starting with a letter
    assert len(project["name"]) < 100
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"]
    assert project["license"] == {"text": "Apache-2.0"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in license_text
    # comfy-cli keeps classifiers only if every OS / accelerator one is among these
    for classifier in project["classifiers"]:
        if classifier.startswith("Operating System :: "):
            assert classifier.split(" :: ")[1] in {"Microsoft", "POSIX", "MacOS", "OS Independent"}, classifier
        if classifier.startswith("Environment ::"):
            assert classifier.removeprefix("Environment :: ") in {
                "GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                "GPU :: Apple Metal"}, classifier
    repository = project["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[^/]+/[^/]+", repository)
    assert set(project["urls"]) <= {"Homepage", "Documentation", "Repository", "Issues"}  # what comfy-cli reads
    assert COMFY["PublisherId"] and COMFY["DisplayName"]


def test_requires_comfyui_is_the_floor_the_pack_checks():
    floor = re.search(r'^COMFYUI_FLOOR = "([0-9.]+)"', (ROOT / "__init__.py").read_text(), re.MULTILINE).group(1)
    assert COMFY["requires-comfyui"] == f">={floor}"
    # comfy-cli drops a requires-comfyui that does not read as [operator]major.minor.patch[,...]
    assert re.fullmatch(r"(==|>=|<=|!=|~=|>|<|<>|=)?\s*\d+\.\d+\.\d+(-[a-zA-Z0-9]+)?", COMFY["requires-comfyui"])


def test_icon_is_the_shipped_svg_at_the_repository_raw_address():
    repository = PYPROJECT["project"]["urls"]["Repository"]
    raw = repository.replace("https://github.com/", "https://raw.githubusercontent.com/")
    assert COMFY["Icon"] == f"{raw}/main/icon.svg"
    assert "icon.svg" in archive_files()
    svg = ElementTree.parse(ROOT / "icon.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert int(svg.get("width")) <= 800 and int(svg.get("height")) <= 400  # the Registry's largest icon


def serve_archive(comfyui, base: Path, *test_nodes: str) -> harness.Server:
    """A ComfyUI whose only custom nodes are the archive's files and the named tests/comfyui/ folders."""
    pack = base / "custom_nodes" / PACK
    for name in archive_files():
        (pack / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, pack / name)
    for node in test_nodes:
        shutil.copytree(ROOT / "tests" / "comfyui" / node, base / "custom_nodes" / node)
    return harness.Server(*comfyui, base)


def pack_trouble(log: str, base: Path) -> list[str]:
    """The log's lines that name the pack's folder, less the one saying it imported: a traceback through
    its files, "Cannot import", "(IMPORT FAILED)". (ComfyUI's own tracebacks, e.g. for a missing
    torchaudio, are not the pack's.)"""
    folder = str(base / "custom_nodes" / PACK)
    imported = re.compile(r"\d+\.\d seconds: " + re.escape(folder) + "$")  # 0.33 puts "[INFO]" before it
    return [line for line in log.splitlines() if folder in line and not imported.search(line)]


@pytest.mark.floor
def test_the_archive_alone_loads_in_comfyui(comfyui, tmp_path):
    server = serve_archive(comfyui, tmp_path)
    try:
        assert NODE_IDS <= set(server.get("/object_info"))
        log = server.log_text()
    finally:
        server.stop()
    assert not pack_trouble(log, tmp_path), log[-3000:]
    assert "Unable to parse pyproject.toml" not in log  # ComfyUI reads the pack's pyproject.toml too
    assert OLD_COMFYUI_LINE not in log


@pytest.mark.floor
def test_an_older_comfyui_gets_one_line_and_no_nodes(comfyui, tmp_path):
    server = serve_archive(comfyui, tmp_path, "hide_apply_rope1")  # deletes apply_rope1 before the pack loads
    try:
        object_info = server.get("/object_info")
        log = server.log_text()
    finally:
        server.stop()
    lines = [line for line in log.splitlines() if OLD_COMFYUI_LINE in line]
    assert len(lines) == 1, log[-3000:]
    assert re.search(r"needs ComfyUI >= 0\.3\.60; this is \d+\.\d+\.\d+ "
                     r"\(it lacks comfy\.ldm\.flux\.math\.apply_rope1\)", lines[0]), lines[0]
    assert not pack_trouble(log, tmp_path), log[-3000:]
    assert not NODE_IDS & set(object_info)
    assert "KSampler" in object_info  # ComfyUI itself runs on
