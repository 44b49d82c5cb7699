import pytest
import torch

from vap_core import InputError
from vap_core.frames import select_frames


def test_evenly_spreads_over_the_whole_video():
    assert select_frames(97, 49) == list(range(0, 97, 2))
    idx = select_frames(120, 49)
    assert idx[0] == 0 and idx[-1] == 119 and len(idx) == 49 and idx == sorted(idx)
    assert idx == torch.linspace(0, 119, 49).long().tolist()
    assert select_frames(3, 5) == [0, 0, 1, 1, 2]  # a short video: frames repeat


def test_first_and_random_take_contiguous_runs():
    assert select_frames(100, 5, "first") == [0, 1, 2, 3, 4]
    runs = {tuple(select_frames(100, 5, "random", seed)) for seed in range(20)}
    assert len(runs) > 1
    for run in runs:
        assert list(run) == list(range(run[0], run[0] + 5)) and run[-1] < 100
    assert select_frames(100, 5, "random", 7) == select_frames(100, 5, "random", 7)


@pytest.mark.parametrize("args, message", [
    ((10, 49, "first"), "has 10 frames"), ((10, 49, "random"), "needs at least 49"),
    ((0, 49), "cannot take"), ((10, 0), "cannot take"), ((10, 5, "middle"), "not one of"),
    ((10, 1), "1 reference frame is a still image, not a video"),
    ((3, 1025), r"the reference video has 3 frames; 1025 would repeat each about 342 times \(at most 4"),
    ((3, 13), r"has 3 frames; 13 would repeat each about 4 times .* Keep at most 12 frames"),
])
def test_bad_requests(args, message):
    with pytest.raises(InputError, match=message):
        select_frames(*args)


def test_evenly_repeats_up_to_four_times_and_says_so():
    from vap_core.frames import repeat_notice
    assert len(select_frames(3, 12)) == 12  # 4 copies of each: allowed
    assert repeat_notice(3, 9, "evenly") == ("the reference video has 3 frames and 9 were asked: 'evenly' repeats each "
                                             "about 3.0 times (as the paper's pipeline does for a short clip). A longer "
                                             "clip gives smoother motion.")
    assert repeat_notice(9, 9, "evenly") is None and repeat_notice(30, 9, "first") is None


@pytest.mark.parametrize("size, refused", [((1, 1), True), ((103, 60), True), ((104, 59), True), ((104, 60), False),
                                           ((832, 480), False), ((120, 2000), False)])
def test_a_reference_far_below_the_video_size_is_refused(size, refused):
    from vap_core.frames import check_reference_size
    if refused:
        with pytest.raises(InputError, match=rf"the reference is {size[0]}x{size[1]}, far below the video's 832x480: "
                                             r".* at least 104x60, ideally near the video's size"):
            check_reference_size(*size, 832, 480)
    else:
        check_reference_size(*size, 832, 480)


def test_each_fit_gives_the_frames_it_promises():
    from vap_core.frames import fit_frames
    # a 1x40x20 portrait frame (W 20, H 40): left half 0.2, right half 0.8, a white top row
    frame = torch.full((1, 40, 20, 3), 0.2)
    frame[:, :, 10:] = 0.8
    frame[:, 0] = 1.0
    stretch = fit_frames(frame, 40, 20, "stretch")  # to landscape 40x20: squashed, all of it
    assert stretch.shape == (1, 20, 40, 3)
    assert abs(float(stretch[0, 10, 5, 0]) - 0.2) < 1e-6 and abs(float(stretch[0, 10, 35, 0]) - 0.8) < 1e-6
    assert float(stretch[0, 0, 5, 0]) > 0.5  # the top row is still there
    crop = fit_frames(frame, 40, 20, "crop")  # the centre 20x10 band, scaled up: no top row
    assert crop.shape == (1, 20, 40, 3) and float(crop[0, 0, 5, 0]) < 0.25
    pad = fit_frames(frame, 40, 20, "pad")  # all of it, 10x20 in the middle, black beside it
    assert pad.shape == (1, 20, 40, 3)
    assert float(pad[0, :, :15].max()) == 0.0 and float(pad[0, :, 25:].max()) == 0.0
    assert abs(float(pad[0, 10, 16, 0]) - 0.2) < 1e-6 and abs(float(pad[0, 10, 23, 0]) - 0.8) < 1e-6
    with pytest.raises(InputError, match="fit 'zoom' is not one of stretch, crop, pad"):
        fit_frames(frame, 40, 20, "zoom")
