"""Video-As-Prompt (arXiv 2510.20888) for Wan 2.1 I2V in plain PyTorch. No ComfyUI import here.

The names below load on first use, so that a torch-free submodule (suffixes) imports without torch."""
import importlib

_WHERE = {"WanConfig": "config", "VAPExpert": "expert", "load_expert": "expert", "WanI2V": "backbone",
          "load_wan_file": "backbone", "VAPTransformer": "model",
          **{name: "errors" for name in ("VAPError", "NotACheckpointError", "MissingShardError", "CorruptCheckpointError",
                                         "CheckpointMismatchError", "IncompatibleExpertError", "InputError")}}
__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'vap_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
