"""VAPCogVideoXImageToVideo: the target's image condition of CogVideoX-I2V, as the paper's pipeline makes it
(ComfyUI has no stock node for it)."""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.utils
import node_helpers
import nodes
from comfy_api.latest import io

from ..vap_core.errors import InputError
from ..vap_core.vae_grid import latent_frames
from .choices import CATEGORY
from .reference_nodes import is_cogvideox_vae


class VAPCogVideoXImageToVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPCogVideoXImageToVideo",
            display_name="Video-As-Prompt CogVideoX Image To Video",
            category=CATEGORY,
            description="The empty latent of a CogVideoX-5B-I2V video and its image condition: the start image's "
                        "latent in the first latent frame and zeros after it, as the paper's pipeline builds it. The "
                        "learned position table of CogVideoX-5B-I2V fixes the size: 720x480, 49 frames.",
            inputs=[
                io.Conditioning.Input("positive", tooltip="the prompt (CLIP Text Encode with CogVideoX's T5)"),
                io.Conditioning.Input("negative", tooltip="the negative prompt"),
                io.Vae.Input("vae", tooltip="CogVideoX's VAE"),
                io.Image.Input("start_image", tooltip="the image to animate; stretched to width x height"),
                io.Int.Input("width", default=720, min=16, max=nodes.MAX_RESOLUTION, step=16,
                             tooltip="720: the only width CogVideoX-5B-I2V's position table fits"),
                io.Int.Input("height", default=480, min=16, max=nodes.MAX_RESOLUTION, step=16,
                             tooltip="480: the only height CogVideoX-5B-I2V's position table fits"),
                io.Int.Input("length", default=49, min=1, max=nodes.MAX_RESOLUTION, step=4,
                             tooltip="frames; 49 (13 latent frames) is what CogVideoX-5B-I2V was trained with"),
                io.Int.Input("batch_size", default=1, min=1, max=4096, tooltip="videos sampled at once"),
            ],
            outputs=[io.Conditioning.Output(display_name="positive", tooltip="with the image condition, for VAP Encode "
                                                                             "Reference"),
                     io.Conditioning.Output(display_name="negative", tooltip="with the image condition, for VAP Encode "
                                                                             "Reference"),
                     io.Latent.Output(display_name="latent", tooltip="the empty video latent, for the sampler")],
        )

    @classmethod
    def execute(cls, positive, negative, vae, start_image, width, height, length, batch_size) -> io.NodeOutput:
        if not is_cogvideox_vae(vae):
            raise InputError("the VAE is not CogVideoX's: load the CogVideoX VAE (Load VAE) for this node.")
        frames = latent_frames(length)
        latent = torch.zeros([batch_size, 16, frames, height // 8, width // 8],
                             device=comfy.model_management.intermediate_device())
        image = comfy.utils.common_upscale(start_image[:1].movedim(-1, 1), width, height, "bilinear", "disabled")
        first = vae.encode(image.movedim(1, -1)[..., :3])  # one frame: one latent frame
        concat = torch.zeros([1, 16, frames, height // 8, width // 8], dtype=first.dtype, device=first.device)
        concat[:, :, :1] = first[:, :, :1]
        positive = node_helpers.conditioning_set_values(positive, {"concat_latent_image": concat})
        negative = node_helpers.conditioning_set_values(negative, {"concat_latent_image": concat})
        return io.NodeOutput(positive, negative, {"samples": latent})
