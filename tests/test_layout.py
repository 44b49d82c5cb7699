"""The pack's shape: vap_core stays plain PyTorch, and the pack imports outside ComfyUI."""
import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_vap_core_never_imports_comfy():
    offenders = []
    for path in (ROOT / "vap_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("comfy")]
    assert not offenders


def test_pack_imports_outside_comfyui_and_registers_nothing():
    spec = importlib.util.spec_from_file_location("vap_pack_under_test", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "comfy_entrypoint")
    assert not any(name == "comfy" or name.startswith("comfy.") for name in sys.modules)


def test_requirements_never_pin_torch_above_what_comfyui_has():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    torch_lines = [l for l in lines if l.startswith("torch")]
    assert torch_lines == ["torch>=2.4"]  # a lower bound only: pip never replaces an installed torch
