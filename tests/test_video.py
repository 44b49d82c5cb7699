"""Reading reference video files (vap_core.video): the chosen frames by content, stills refused,
interrupt and progress, and memory that follows the output size, not the source's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from devkit.clips import write_clip
from tests.helpers import edges, write_phone_clip
from vap_core.errors import InputError
from vap_core.frames import select_frames
from vap_core.video import read_frames

ROOT = Path(__file__).resolve().parents[1]


def write_video(path: Path, frames: int, width: int = 64, height: int = 48) -> Path:
    """Frame i is a flat grey of level 8 * i (so a decoded frame tells which one it was)."""
    return write_clip(path, (np.full((height, width, 3), 8 * i % 256, np.uint8) for i in range(frames)),
                      options={"preset": "ultrafast", "crf": "10"})


def frame_numbers(frames) -> list[int]:
    return [round(float(f.mean()) * 255 / 8) for f in frames]


@pytest.mark.parametrize("mode,seed", [("evenly", 0), ("first", 0), ("random", 3)])
def test_the_chosen_frames_are_exactly_the_selected_indices(tmp_path, mode, seed):
    path = write_video(tmp_path / "count.mp4", 30)
    frames, fps = read_frames(path, 9, mode, seed)
    assert frames.shape == (9, 48, 64, 3) and frames.dtype.is_floating_point and fps == 16
    assert frame_numbers(frames) == select_frames(30, 9, mode, seed)


def write_moving(path: Path, codec: str, options: dict) -> Path:
    """64 frames of a random texture sliding left, 128x96: every frame differs and refers to others."""
    texture = np.random.default_rng(0).integers(0, 256, (96, 256, 3), np.uint8)
    return write_clip(path, (texture[:, 2 * i:2 * i + 128] for i in range(64)), codec, options=options)


X264 = "keyint=8:min-keyint=8:scenecut=0:bframes=3"


@pytest.mark.parametrize("name,codec,options", [  # a keyframe every 8 frames
    ("closed.mp4", "libx264", {"x264-params": X264}),
    ("open.mkv", "libx264", {"x264-params": X264 + ":open-gop=1"}),  # B-frames shown before their keyframe
    ("hevc.mp4", "libx265", {"x265-params": "keyint=8:min-keyint=8:bframes=3:log-level=error"}),
    ("vp8.webm", "libvpx", {"g": "8", "auto-alt-ref": "1", "lag-in-frames": "8"}),  # hidden alt-ref frames
    ("vp9.webm", "libvpx-vp9", {"g": "8"}),
    ("av1.mp4", "libsvtav1", {"g": "8", "svtav1-params": "log-level=0"}),  # libdav1d reads skip_frame only once
    ("b_frames.avi", "libx264", {"x264-params": X264}),  # AVI has no display times: decoded whole, in order
])
def test_frames_decoded_from_their_keyframe_equal_a_full_decode(tmp_path, name, codec, options):
    """Only the runs up to each chosen frame are decoded, and each chosen frame is exactly what
    decoding the whole clip gives."""
    path = write_moving(tmp_path / name, codec, options)
    with av.open(str(path)) as container:
        every = [torch.from_numpy(f.to_ndarray(format="rgb24")).float() / 255 for f in container.decode(video=0)]
    assert len(every) == 64
    selections = [("evenly", 5, 0), ("first", 3, 0), ("evenly", 64, 0), ("evenly", 10, 0)]
    selections += [("random", count, seed) for count in (3, 10, 20) for seed in range(8)]  # runs across keyframes
    for mode, count, seed in selections:
        decoded = []
        frames, _ = read_frames(path, count, mode, seed, check_interrupt=lambda: decoded.append(1))
        assert torch.equal(frames, torch.stack([every[i] for i in select_frames(64, count, mode, seed)])), (mode, seed)
        if (mode, count) == ("evenly", 5) and not name.endswith(".avi"):
            assert len(decoded) < 40  # the runs up to frames 0, 16, 32, 47 and 63, not all 64


def test_a_stream_without_timestamps_is_decoded_whole_in_order(tmp_path):
    """A raw H.264 stream with B-frames, named .mp4: its packets carry no times, so nothing is left out."""
    raw = write_moving(tmp_path / "raw.h264", "libx264", {"x264-params": X264})
    path = raw.rename(tmp_path / "raw.mp4")
    with av.open(str(path)) as container:
        every = [torch.from_numpy(f.to_ndarray(format="rgb24")).float() / 255 for f in container.decode(video=0)]
    frames, _ = read_frames(path, 5)
    assert torch.equal(frames, torch.stack([every[i] for i in select_frames(64, 5, "evenly")]))


def test_an_animated_gif_and_frames_scaled_down_to_max_side(tmp_path):
    images = [Image.new("RGB", (200, 100), (8 * i,) * 3) for i in range(12)]
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=50, loop=0)
    frames, fps = read_frames(tmp_path / "a.gif", 5, "evenly", max_side=64)
    assert frames.shape == (5, 32, 64, 3) and fps == 20
    assert frame_numbers(frames) == select_frames(12, 5, "evenly")
    big, _ = read_frames(write_video(tmp_path / "wide.mp4", 5, 320, 96), 3, "first", max_side=160)
    assert big.shape == (3, 48, 160, 3)


@pytest.mark.parametrize("matrix,white,grey", [  # where ffmpeg's autorotate shows each edge (checked)
    ((1, 0, 0, 1), "top", "left"),       # as stored
    ((0, 1, -1, 0), "right", "top"),     # shown turned 90 degrees clockwise (ffprobe: rotation -90): a portrait clip
    ((0, -1, 1, 0), "left", "bottom"),   # turned 90 degrees counter-clockwise (rotation 90)
    ((-1, 0, 0, -1), "bottom", "right"),  # upside down (rotation 180)
    ((-1, 0, 0, 1), "top", "right"),     # mirrored left-right (a front camera)
    ((1, 0, 0, -1), "bottom", "left"),   # mirrored top-bottom
    ((0, 1, 1, 0), "left", "top"),       # turned and mirrored
    ((0, -1, -1, 0), "right", "bottom"),
])
def test_frames_come_out_as_players_show_them(tmp_path, matrix, white, grey):
    """A clip stored 64x32, top rows white and left columns grey; the display matrix says how to show it."""
    frames, _ = read_frames(write_phone_clip(tmp_path / "phone.mp4", matrix), 3)
    frame = frames[0, :, :, 0]
    assert frame.shape == ((32, 64) if white in ("top", "bottom") else (64, 32))
    assert edges(frame) == (white, grey)


@pytest.mark.parametrize("orientation,white,grey", [(6, "right", "top"), (3, "bottom", "right"), (2, "top", "right")])
def test_an_animated_webp_is_shown_with_its_exif_orientation(tmp_path, orientation, white, grey):
    """EXIF orientation 6: turned 90 degrees clockwise; 3: upside down; 2: mirrored left-right."""
    images = []
    for i in range(4):
        image = np.zeros((32, 64, 3), np.uint8)
        image[:4], image[4:, :4], image[10:20, 20:40] = 255, 128, 10 * i  # the write_phone_clip pattern, moving
        images.append(Image.fromarray(image))
    exif = Image.Exif()
    exif[0x0112] = orientation
    images[0].save(tmp_path / "o.webp", save_all=True, append_images=images[1:], duration=50, exif=exif.tobytes(),
                   lossless=True)
    frames, _ = read_frames(tmp_path / "o.webp", 3)
    assert edges(frames[0, :, :, 0]) == (white, grey)


def test_a_still_image_is_not_a_reference_video(tmp_path):
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "still.png")
    (tmp_path / "photo.mp4").write_bytes((tmp_path / "still.png").read_bytes())  # a PNG renamed .mp4
    Image.new("RGB", (64, 48)).save(tmp_path / "still.webp")
    for name in ("photo.mp4", "still.webp"):
        with pytest.raises(InputError, match="holds 1 frame: a still image, not a video"):
            read_frames(tmp_path / name, 49)
    write_video(tmp_path / "one.mp4", 1)
    with pytest.raises(InputError, match="a still image"):
        read_frames(tmp_path / "one.mp4", 49)


def test_repeated_frames_are_told_with_the_clips_frame_count_and_too_many_refused_before_decoding(tmp_path):
    path = write_video(tmp_path / "short.mp4", 3)
    told = []
    frames, _ = read_frames(path, 9, notice=told.append)
    assert frames.shape[0] == 9 and told == [
        "short.mp4: the reference video has 3 frames and 9 were asked: 'evenly' repeats each about 3.0 times (as the "
        "paper's pipeline does for a short clip). A longer clip gives smoother motion."]
    told.clear()
    read_frames(path, 3, notice=told.append)
    read_frames(path, 2, "first", notice=told.append)
    assert told == []  # nothing repeats
    progress = []
    with pytest.raises(InputError, match="has 3 frames; 65 would repeat each about 22 times"):
        read_frames(path, 65, progress=lambda done, total: progress.append(done))
    assert progress == []  # refused before any frame was decoded
    with pytest.raises(InputError, match="1 reference frame is a still image"):
        read_frames(path, 1)


def test_interrupt_stops_decoding_and_progress_counts_kept_frames(tmp_path):
    path = write_video(tmp_path / "long.mp4", 60)

    class Stop(Exception):
        pass
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 5:
            raise Stop
    with pytest.raises(Stop):  # passed through as it is, not turned into a file error
        read_frames(path, 49, check_interrupt=check)
    assert len(calls) == 5
    progress = []
    read_frames(path, 4, "first", progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_peak_memory_follows_the_output_size_not_the_source(tmp_path):
    """49 frames 'evenly' from a 2000x2000 clip, scaled to 832 as they are read: the process's peak
    memory grows by about the output tensor, not 49 full-resolution frames (2.35 GB in float32)."""
    path = write_video(tmp_path / "big.mp4", 20, 2000, 2000)
    script = f"""
import json
from vap_core.video import read_frames
def rss(): return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
def hwm(): return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
read_frames({str(path)!r}, 2, "first", max_side=832)  # libraries loaded, decoder warmed
before = rss()
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark
frames, _ = read_frames({str(path)!r}, 49, "evenly", max_side=832)
print(json.dumps({{"growth": hwm() - before, "output": frames.numel() * frames.element_size()}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    measured = json.loads(out.stdout)
    print(f"\npeak growth {measured['growth'] / 2**20:.0f} MiB for a {measured['output'] / 2**20:.0f} MiB output")
    assert measured["output"] == 49 * 832 * 832 * 3 * 4
    assert measured["growth"] <= measured["output"] + 200 * 2**20


def write_coded(path: Path, codec: str, pix_fmt: str, alpha: bool = False, durations_ms=None) -> Path:
    """Frame i a flat grey of level 8 * i (alpha 100 where it has one), as `codec` stores it."""
    images = [np.full((48, 64, 4 if alpha else 3), 8 * i, np.uint8) for i in range(9)]
    if alpha:
        for image in images:
            image[..., 3] = 100
    return write_clip(path, images, codec, pix_fmt, durations_ms=durations_ms)


@pytest.mark.parametrize("name,codec,pix_fmt,alpha", [
    ("h264_10bit.mp4", "libx264", "yuv420p10le", False),
    ("hevc_10bit.mp4", "libx265", "yuv420p10le", False),
    ("vp9_alpha.webm", "libvpx-vp9", "yuva420p", True),
    ("prores_4444.mov", "prores_ks", "yuva444p10le", True),
])
def test_ten_bit_alpha_and_prores_files_read_as_rgb_in_0_1(tmp_path, name, codec, pix_fmt, alpha):
    frames, fps = read_frames(write_coded(tmp_path / name, codec, pix_fmt, alpha), 9, "first")
    assert frames.shape == (9, 48, 64, 3) and fps == 16  # alpha dropped
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1
    assert frame_numbers(frames) == list(range(9))


def test_a_variable_frame_rate_clip_gives_every_frame_and_its_average_rate(tmp_path):
    path = write_coded(tmp_path / "vfr.mp4", "libx264", "yuv420p", durations_ms=[40, 80, 20])
    frames, fps = read_frames(path, 9, "first")
    assert frame_numbers(frames) == list(range(9))
    with av.open(str(path)) as container:
        assert fps == float(container.streams.video[0].average_rate)  # the stream's real average rate...
    assert 18 < fps < 23  # ...about 9 frames over 420 to 440 ms, not the 16 the writer was told
