"""VAPLoadReferenceVideo and VAPEncodeReference."""
from __future__ import annotations

import os

import torch

import comfy.latent_formats
import comfy.utils
import folder_paths
import nodes
from comfy_api.latest import io

from ..vap_core.errors import InputError
from ..vap_core.frames import MODES
from .binding import REFERENCE, Reference, ReferenceCond
from .video_file import SUFFIXES, read_frames


def _input_videos() -> list[str]:
    folder = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)) and os.path.splitext(f)[1].lower() in SUFFIXES)


class VAPLoadReferenceVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPLoadReferenceVideo",
            display_name="Load VAP Reference Video",
            category="video_as_prompt",
            description="Loads a reference video from the input folder and picks `frames` of its frames.",
            inputs=[
                io.Combo.Input("video", options=_input_videos(), upload=io.UploadType.video),
                io.Int.Input("frames", default=49, min=1, max=1025, step=4,
                             tooltip="how many frames to keep; Wan uses 4k+1 (49 = 13 latent frames, the paper's)"),
                io.Combo.Input("selection", options=list(MODES), default="evenly",
                               tooltip="evenly: spread over the whole video (the paper's); first: the first frames; "
                                       "random: a contiguous run at a seeded start"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="for 'random' selection"),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, video, frames, selection, seed) -> io.NodeOutput:
        images, fps = read_frames(folder_paths.get_annotated_filepath(video), frames, selection, seed)
        return io.NodeOutput(images, fps)

    @classmethod
    def fingerprint_inputs(cls, video, **kwargs):
        return os.path.getmtime(folder_paths.get_annotated_filepath(video))

    @classmethod
    def validate_inputs(cls, video, **kwargs):
        if not folder_paths.exists_annotated_filepath(video):
            return f"reference video not found in the input folder: {video}"
        return True


class VAPEncodeReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPEncodeReference",
            display_name="VAP Encode Reference",
            category="conditioning/video_models",
            description="Puts the reference video (its latent, first-frame condition and CLIP tokens) and its captions "
                        "into the conditioning: positive rows get the reference caption, negative rows its negative.",
            inputs=[
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Vae.Input("vae"),
                io.ClipVision.Input("clip_vision"),
                io.Image.Input("reference", tooltip="reference video frames (from Load VAP Reference Video or any "
                                                    "video node)"),
                io.Conditioning.Input("reference_positive", tooltip="the reference video's caption"),
                io.Conditioning.Input("reference_negative", tooltip="negative prompt for the reference caption"),
                io.Int.Input("width", default=832, min=16, max=nodes.MAX_RESOLUTION, step=16,
                             tooltip="the video's width (as in WanImageToVideo); the reference is resized and "
                                     "center-cropped to it"),
                io.Int.Input("height", default=480, min=16, max=nodes.MAX_RESOLUTION, step=16),
            ],
            outputs=[io.Conditioning.Output(display_name="positive"), io.Conditioning.Output(display_name="negative")],
        )

    @classmethod
    def execute(cls, positive, negative, vae, clip_vision, reference, reference_positive, reference_negative,
                width, height) -> io.NodeOutput:
        if getattr(vae, "latent_channels", None) != 16 or getattr(vae, "latent_dim", None) != 3:
            raise InputError("the VAE is not Wan 2.1's (16 latent channels, video): load wan_2.1_vae.safetensors.")
        if reference.ndim != 4 or reference.shape[0] < 1:
            raise InputError(f"the reference must be video frames (IMAGE batch), got shape {tuple(reference.shape)}.")
        ref_x = encode_reference_input(vae, reference, width, height)
        clip_tokens = clip_vision.encode_image(reference[:1, :, :, :3], crop=True).penultimate_hidden_states
        positive = with_reference(positive, ref_x, _caption(reference_positive, "reference_positive"), clip_tokens)
        negative = with_reference(negative, ref_x, _caption(reference_negative, "reference_negative"), clip_tokens)
        return io.NodeOutput(positive, negative)


def encode_reference_input(vae, frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The reference's 36-channel input, laid out like Wan I2V's: its latent, a mask that is 1 on
    latent frame 0, and the latent of [its first frame, then grey frames]."""
    frames = comfy.utils.common_upscale(frames[..., :3].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    first = torch.full_like(frames, 0.5)
    first[0] = frames[0]
    latent_format = comfy.latent_formats.Wan21()
    latent = latent_format.process_in(vae.encode(frames)).float()
    condition = latent_format.process_in(vae.encode(first)).float()
    mask = torch.zeros_like(latent[:, :4])
    mask[:, :, 0] = 1.0
    return torch.cat([latent, mask, condition], dim=1)


def _caption(conditioning, name: str) -> torch.Tensor:
    if not conditioning:
        raise InputError(f"{name} is empty: connect a CLIP Text Encode of the reference's caption.")
    return conditioning[0][0]


def with_reference(conditioning, ref_x, caption, clip_tokens):
    """CONDITIONING rows that also carry the reference (in model_conds: ComfyUI hands it per row to
    WanModel's forward, where binding.VAPRunner takes it)."""
    reference = Reference(ref_x, caption, clip_tokens)
    out = []
    for tokens, options in conditioning:
        options = options.copy()
        options["model_conds"] = {**options.get("model_conds", {}), REFERENCE: ReferenceCond(reference)}
        out.append([tokens, options])
    return out
