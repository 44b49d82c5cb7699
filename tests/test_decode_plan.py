"""Which packets are decoded for the chosen frames (vap_core.decode_plan), on packet lists written out
by hand; test_video checks the frames that come out against a full decode."""
from vap_core.decode_plan import Packet, packets_to_decode


def gop(start: int, length: int) -> list[Packet]:
    return [Packet(start + i, i == 0) for i in range(length)]


def test_each_chosen_frame_is_decoded_from_its_keyframe_and_the_rest_is_not():
    packets = gop(0, 4) + gop(4, 4) + gop(8, 4)
    assert packets_to_decode(packets, {5}) == [False] * 4 + [True, True, False, False] + [False] * 4
    assert packets_to_decode(packets, {2, 9}) == [True, True, True, False] + [False] * 4 + [True, True, False, False]
    assert packets_to_decode(packets, set()) == [False] * 12


def test_a_run_is_decoded_once_when_several_chosen_frames_share_it():
    packets = gop(0, 6)
    assert packets_to_decode(packets, {1, 4}) == [True] * 5 + [False]


def test_a_frame_shown_before_its_keyframe_is_decoded_from_the_run_before():
    # open GOP, decode order: I0 P3 B1 B2 | I6 B4 B5 P7 (B4 and B5 are shown before I6 and refer to P3)
    packets = [Packet(0, True), Packet(3, False), Packet(1, False), Packet(2, False),
               Packet(6, True), Packet(4, False), Packet(5, False), Packet(7, False)]
    assert packets_to_decode(packets, {5}) == [True] * 7 + [False]
    assert packets_to_decode(packets, {7}) == [False] * 4 + [True] * 4
    # the keyframe is planned first, on its own; B4 then needs the run before it as well
    assert packets_to_decode(packets, {4, 6}) == [True] * 6 + [False] * 2
    assert packets_to_decode(packets, {5, 6}) == [True] * 7 + [False]


def test_packets_never_shown_are_decoded_on_the_way_and_a_stream_need_not_start_with_a_keyframe():
    packets = [Packet(None, False), Packet(0, False), Packet(1, False), Packet(None, True), Packet(2, False)]
    assert packets_to_decode(packets, {1}) == [True, True, True, False, False]
    assert packets_to_decode(packets, {2}) == [False, False, False, True, True]
