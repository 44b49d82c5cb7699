"""How players show a stored video frame: the container's display matrix turns and mirrors it (a phone
stores a portrait clip landscape and says so there). numpy only, so the batch runner can use it."""
from __future__ import annotations

import logging
import struct

import numpy as np

# The display matrix's (a, b, c, d) by sign -> np.rot90's quarter turns, then whether to mirror left-right
# (each of the eight checked against ffmpeg's autorotate)
_ORIENTATIONS = {
    (1, 0, 0, 1): (0, False), (0, 1, -1, 0): (3, False), (0, -1, 1, 0): (1, False), (-1, 0, 0, -1): (2, False),
    (-1, 0, 0, 1): (0, True), (1, 0, 0, -1): (2, True), (0, 1, 1, 0): (3, True), (0, -1, -1, 0): (1, True),
}


def orientation(frame, name: str) -> tuple[int, bool]:
    """(quarter turns, mirrored) that show a PyAV frame of the file `name` as players do; logs them."""
    matrix = frame.side_data.get("DISPLAYMATRIX")
    if matrix is None:
        return 0, False
    m = struct.unpack("=9i", bytes(matrix))
    signs = tuple(int(np.sign(v)) for v in (m[0], m[1], m[3], m[4]))
    if signs not in _ORIENTATIONS:
        logging.warning("VAP: %s asks to be shown turned by %.0f degrees; only quarter turns are applied, "
                        "so its frames are used as stored", name, -frame.rotation)
        return 0, False
    quarter_turns, mirrored = _ORIENTATIONS[signs]
    if quarter_turns or mirrored:
        logging.info("VAP: %s is stored %s; its frames are turned as players show them (%d degrees clockwise%s)",
                     name, "rotated" if quarter_turns else "mirrored", (4 - quarter_turns) % 4 * 90,
                     ", mirrored" if mirrored else "")
    return quarter_turns, mirrored


def as_shown(rgb: np.ndarray, turns: tuple[int, bool]) -> np.ndarray:
    """An (H, W, C) array of a stored frame, turned by orientation()'s answer."""
    quarter_turns, mirrored = turns
    if not (quarter_turns or mirrored):
        return rgb
    rgb = np.rot90(rgb, quarter_turns)
    return np.ascontiguousarray(rgb[:, ::-1] if mirrored else rgb)
