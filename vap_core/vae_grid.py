"""How the video VAEs of Wan 2.1 and CogVideoX map pixels to latents: 8x8 pixels per latent pixel, and the
first frame alone then each 4 frames after it per latent frame (so videos of 4k+1 frames)."""
from __future__ import annotations

VAE_STRIDE = 8
TIME_STRIDE = 4


def latent_frames(frames: int) -> int:
    """Latent frames of a video of `frames` frames."""
    return (frames - 1) // TIME_STRIDE + 1


def video_frames(latents: int) -> int:
    """Video frames that `latents` latent frames decode to."""
    return TIME_STRIDE * (latents - 1) + 1
