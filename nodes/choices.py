"""What every node of the pack shares: its node-library category, and the check of a combo value
(ComfyUI 0.3.64 does not check V3 combo values against their options)."""
from __future__ import annotations

from ..vap_core.errors import InputError

CATEGORY = "Video-As-Prompt"


def check_choice(name: str, value, options):
    if value not in options:
        raise InputError(f"{name} {value!r} is not one of {', '.join(map(str, options))}.")
