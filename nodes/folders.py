"""The `models/vap` folder (also settable in extra_model_paths.yaml as `vap:`) and what it lists."""
from __future__ import annotations

import os
import re

import folder_paths

FOLDER = "vap"
EXTENSIONS = {".safetensors", ".json"}
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")


def register():
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)
    paths, extensions = folder_paths.folder_names_and_paths[FOLDER]
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(extensions) | EXTENSIONS)


def expert_choices() -> list[str]:
    """Expert files and released checkpoints: single files, and the index json of sharded ones
    (their shards and config.json are not listed)."""
    return [n for n in folder_paths.get_filename_list(FOLDER)
            if n.endswith(".safetensors.index.json") or (n.endswith(".safetensors") and not _SHARD.search(n))]


def released_choices() -> list[str]:
    """Released checkpoints only: weights that sit beside a config.json (in transformer/)."""
    return [n for n in expert_choices() if os.path.isfile(os.path.join(os.path.dirname(full_path(n)), "config.json"))]


def check_listed(name: str, choices: list[str]):
    """True, or the message ComfyUI shows at validation for a file that is not there."""
    if name in choices:
        return True
    try:
        full_path(name)
    except FileNotFoundError as err:
        return str(err)
    return f"'{name}' is in models/{FOLDER} but is not an expert file or a released checkpoint's index json."


def full_path(name: str) -> str:
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise FileNotFoundError(
            f"'{name}' is not in models/{FOLDER} (or a 'vap' folder of extra_model_paths.yaml). Put the expert file "
            "or the released checkpoint there and press R in the UI to refresh the list.")
    return path
