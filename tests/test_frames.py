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
])
def test_bad_requests(args, message):
    with pytest.raises(InputError, match=message):
        select_frames(*args)
