"""Which packets of a video to decode for a few chosen frames. A frame can only be decoded from the
keyframe before it (a random-access point, where players seek to), so each chosen frame needs the
packets from that keyframe up to its own; the rest of a long clip is never decoded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True, slots=True)
class Packet:
    frame: int | None  # its place in display order; None for one never shown (an edit list's pre-roll)
    keyframe: bool


def packets_to_decode(packets: Sequence[Packet], wanted: set[int]) -> list[bool]:
    """For each packet, in decode order: whether it must go to the decoder for every wanted frame to
    come out exactly as a full decode gives it."""
    decode = [False] * len(packets)
    run_starts = []  # positions of the keyframes seen so far (the first packet starts a run in any case)
    for at, packet in enumerate(packets):
        if packet.keyframe or at == 0:
            run_starts.append(at)
        if packet.frame not in wanted:
            continue
        start = run_starts[-1]
        key_frame = packets[start].frame
        if key_frame is not None and packet.frame < key_frame and len(run_starts) > 1:
            start = run_starts[-2]  # shown before its keyframe (an open GOP): it refers to the run before
        decode[start:at + 1] = [True] * (at + 1 - start)  # whole: a run marked before may lack its start
    return decode
