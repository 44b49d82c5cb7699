"""A start/end percent of the sampling schedule as a sigma window, for the expert and the guider."""
from __future__ import annotations

import math


def sigma_window(model_patcher, start_percent: float, end_percent: float) -> tuple | None:
    """(high, low) sigmas with the model's own sampling (after ModelSamplingSD3's shift); None when empty."""
    if start_percent >= end_percent:
        return None
    # open-ended at 0% and 100%: the first sigma can round to just above percent_to_sigma(0)
    sampling = model_patcher.get_model_object("model_sampling")
    return (math.inf if start_percent <= 0 else float(sampling.percent_to_sigma(start_percent)),
            -math.inf if end_percent >= 1 else float(sampling.percent_to_sigma(end_percent)))


def in_window(window: tuple | None, sigma: float) -> bool:
    return window is not None and window[1] <= sigma <= window[0]
