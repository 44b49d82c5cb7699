"""VAPLoadReferenceVideo and VAPEncodeReference."""
from __future__ import annotations

import os

import torch

import comfy.latent_formats
import comfy.model_management
import comfy.utils
import folder_paths
import nodes
from comfy_api.latest import io

from ..vap_core.errors import InputError
from ..vap_core.vae_grid import VAE_STRIDE, video_frames
from ..vap_core.frames import FITS, MODES, check_reference_size, fit_frames, select_frames
from .reference_cond import EncodedReference, add_reference
from ..vap_core.suffixes import VIDEO_SUFFIXES
from ..vap_core.video import read_frames
from .apply import warn
from .choices import CATEGORY, check_choice


def _input_videos() -> list[str]:
    folder = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)) and os.path.splitext(f)[1].lower() in VIDEO_SUFFIXES)


def input_video_path(name: str) -> str:
    """The file `name` (as the video combo gives it, optionally annotated [input]/[output]/[temp]) inside
    that ComfyUI folder; anything that resolves outside it (.., an absolute path, a symlink) is refused."""
    relative, folder = folder_paths.annotated_filepath(name)
    folder = os.path.realpath(folder or folder_paths.get_input_directory())
    path = os.path.realpath(os.path.join(folder, relative))
    if os.path.commonpath([folder, path]) != folder:
        raise InputError(f"'{name}' is outside ComfyUI's input folder; only videos in {folder} can be used. "
                         "Upload the video (the node's 'choose file to upload') or copy it there.")
    if not os.path.isfile(path):
        raise InputError(f"reference video '{name}' is not in ComfyUI's input folder ({folder}). Upload it with the "
                         "node's 'choose file to upload', or press R to refresh the list.")
    return path


class VAPLoadReferenceVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPLoadReferenceVideo",
            display_name="Load Video-As-Prompt Reference Video",
            category=CATEGORY,
            description="Loads the reference video (the semantic prompt) from the input folder and keeps `frames` of "
                        "its frames, decoding only what it keeps.",
            inputs=[
                io.Combo.Input("video", options=_input_videos(), upload=io.UploadType.video,
                               tooltip="the reference video, from ComfyUI's input folder: mp4, webm, mov, mkv, avi, "
                                       "animated gif or webp"),
                io.Int.Input("frames", default=49, min=1, max=1025, step=4,
                             tooltip="how many frames to keep; Wan uses 4k+1 (49 = 13 latent frames, the paper's)"),
                io.Combo.Input("selection", options=list(MODES), default="evenly",
                               tooltip="evenly: spread over the whole video (the paper's); first: the first frames; "
                                       "random: a contiguous run at a seeded start"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="where the 'random' selection starts; ignored by the others"),
                io.Int.Input("max_side", default=1280, min=0, max=nodes.MAX_RESOLUTION, step=16, optional=True,
                             tooltip="frames longer than this on either side are scaled down as they are read, "
                                     "which bounds memory for 4K clips (VAP Encode Reference then fits them to the "
                                     "video's size); 0 keeps the source size"),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="the kept frames, for VAP Encode Reference"),
                     io.Float.Output(display_name="fps", tooltip="the video's frame rate")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, video, frames, selection, seed, max_side=1280) -> io.NodeOutput:
        check_choice("selection", selection, MODES)
        bar = comfy.utils.ProgressBar(frames)
        images, fps = read_frames(input_video_path(video), frames, selection, seed, max_side=max_side,
                                  progress=lambda done, total: bar.update_absolute(done, total),
                                  check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted,
                                  notice=lambda text: warn(cls.hidden.unique_id, f"VAP: {text}"))
        return io.NodeOutput(images, fps)

    @classmethod
    def fingerprint_inputs(cls, video, **kwargs):
        return os.path.getmtime(input_video_path(video))

    # Only `video`: ComfyUI skips its own range checks for every input named here (all of them with **kwargs).
    @classmethod
    def validate_inputs(cls, video):
        try:
            input_video_path(video)
        except InputError as err:
            return str(err)
        return True


class VAPEncodeReference(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPEncodeReference",
            display_name="Video-As-Prompt Encode Reference",
            category=CATEGORY,
            description="Puts the reference video (its latent, first-frame condition and CLIP tokens) and its captions "
                        "into WanImageToVideo's conditioning, at that video's width and height: positive rows get the "
                        "reference caption, negative rows its negative.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="WanImageToVideo's positive (it also gives the video size)"),
                io.Conditioning.Input("negative", tooltip="WanImageToVideo's negative"),
                io.Vae.Input("vae", tooltip="the Wan 2.1 VAE (wan_2.1_vae.safetensors), or CogVideoX's"),
                io.Image.Input("reference", tooltip="reference video frames (from Load VAP Reference Video or any "
                                                    "video node); for CogVideoX picked evenly to the video's length"),
                io.Conditioning.Input("reference_positive", tooltip="the reference video's caption: a full "
                                                                    "description of what it shows"),
                io.Conditioning.Input("reference_negative", tooltip="negative prompt for the reference caption"),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Wan 2.1: CLIP vision H, for the reference's first frame (CogVideoX has "
                                            "no CLIP input: leave it unconnected)"),
                io.Combo.Input("fit", options=list(FITS), default="stretch", optional=True,
                               tooltip="how the reference is brought to the video's size. stretch: to exactly that "
                                       "size (the paper's pipeline does this, so it is the default); crop: its centre "
                                       "at the video's aspect (as WanImageToVideo does the image); pad: all of it, "
                                       "on black. For a portrait clip and a landscape video, crop keeps a third of "
                                       "the picture and stretch squashes it"),
            ],
            outputs=[io.Conditioning.Output(display_name="positive", tooltip="positive with the reference, for the sampler"),
                     io.Conditioning.Output(display_name="negative", tooltip="negative with the reference, for the sampler")],
        )

    @classmethod
    def execute(cls, positive, negative, vae, reference, reference_positive, reference_negative, clip_vision=None,
                fit="stretch") -> io.NodeOutput:
        check_choice("fit", fit, FITS)
        if getattr(vae, "latent_channels", None) != 16 or getattr(vae, "latent_dim", None) != 3:
            raise InputError("the VAE is not a video VAE of Wan 2.1 or CogVideoX (16 latent channels): load "
                             "wan_2.1_vae.safetensors, or CogVideoX's VAE for the CogVideoX expert.")
        if reference.ndim != 4 or reference.shape[0] < 1:
            raise InputError(f"the reference must be video frames (IMAGE batch), got shape {tuple(reference.shape)}.")
        width, height = video_size(positive)
        check_reference_size(reference.shape[2], reference.shape[1], width, height)
        if is_cogvideox_vae(vae):
            # the paper's CogVideoX pipeline: the reference as long as the video, picked evenly; no CLIP input
            frames = video_frames(positive[0][1]["concat_latent_image"].shape[2])
            reference = reference[torch.tensor(select_frames(reference.shape[0], frames, "evenly"))]
            ref_x = encode_cog_reference_input(vae, fit_frames(reference[..., :3], width, height, fit))
            clip_tokens = None
        else:
            if clip_vision is None:
                raise InputError("Wan 2.1 needs CLIP vision H for the reference's first frame: connect Load CLIP Vision "
                                 "(clip_vision_h.safetensors) to VAP Encode Reference's clip_vision.")
            ref_x = encode_reference_input(vae, fit_frames(reference[..., :3], width, height, fit))
            clip_tokens = clip_vision.encode_image(reference[:1, :, :, :3], crop=True).penultimate_hidden_states
        positive = with_reference(positive, ref_x, _caption(reference_positive, "reference_positive"), clip_tokens)
        negative = with_reference(negative, ref_x, _caption(reference_negative, "reference_negative"), clip_tokens)
        return io.NodeOutput(positive, negative)


def video_size(positive) -> tuple[int, int]:
    """(width, height) in pixels of the video WanImageToVideo set up: from its concat_latent_image."""
    latent = positive[0][1].get("concat_latent_image") if positive else None
    if latent is None:
        raise InputError("positive has no image-to-video latent: connect WanImageToVideo's positive and negative to "
                         "VAP Encode Reference (it reads the video's width and height from them).")
    return latent.shape[-1] * VAE_STRIDE, latent.shape[-2] * VAE_STRIDE


def encode_reference_input(vae, frames: torch.Tensor) -> torch.Tensor:
    """The reference's 36-channel input from its frames at the video's size, laid out like Wan I2V's:
    its latent, a mask that is 1 on latent frame 0, and the latent of [its first frame, then grey frames]."""
    first = torch.full_like(frames, 0.5)
    first[0] = frames[0]
    latent_format = comfy.latent_formats.Wan21()
    latent = latent_format.process_in(vae.encode(frames)).float()
    condition = latent_format.process_in(vae.encode(first)).float()
    mask = torch.zeros_like(latent[:, :4])
    mask[:, :, 0] = 1.0
    return torch.cat([latent, mask, condition], dim=1)


def is_cogvideox_vae(vae) -> bool:
    return type(getattr(vae, "first_stage_model", None)).__name__ == "AutoencoderKLCogVideoX"


def encode_cog_reference_input(vae, frames: torch.Tensor) -> torch.Tensor:
    """The reference's 32-channel input from its frames at the video's size, laid out like the target's of CogVideoX
    I2V: its latent, then its first frame's latent in latent frame 0 and zeros after it (both scaled as the model
    sees them)."""
    latent_format = comfy.latent_formats.CogVideoX1_5()  # CogVideoX-5B's VAE scale (0.7)
    latent = latent_format.process_in(vae.encode(frames)).float()
    condition = torch.zeros_like(latent)
    condition[:, :, :1] = latent_format.process_in(vae.encode(frames[:1])).float()
    return torch.cat([latent, condition], dim=1)


def _caption(conditioning, name: str) -> torch.Tensor:
    if not conditioning:
        raise InputError(f"{name} is empty: connect a CLIP Text Encode of the reference's caption.")
    return conditioning[0][0]


def with_reference(conditioning, ref_x, caption, clip_tokens):
    """CONDITIONING rows that also carry this reference, after any they carry already (see reference_cond.py)."""
    return add_reference(conditioning, EncodedReference(ref_x, caption, clip_tokens))
