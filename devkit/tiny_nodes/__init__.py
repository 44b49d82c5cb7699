"""Test-only ComfyUI loaders for the tiny text encoder (Wan's or CogVideoX's) and CLIP vision model that tiny_models.py
writes (the stock loaders always build the full-size models). They take the same inputs as
CLIPLoader and CLIPVisionLoader, so a workflow switches to them by class_type alone. And a stand-in
for another pack's attention patch on Wan's blocks, which logs the blocks it ran on, and a log of
what the expert did in each model call."""
import json
import logging
import os
import zlib

import comfy.clip_vision
import comfy.patcher_extension
import folder_paths
import torch
from safetensors import safe_open
from safetensors.torch import load_file

# the output length of the CLIPLoader type's text encoder: umT5 for Wan, T5-XXL padded to 226 for CogVideoX
TEXT_LEN = {"wan": 512, "cogvideox": 226}


class TinyTextEncoder:
    """A random embedding table looked up by hashed words, zero-padded to the real encoder's output length."""

    def __init__(self, table, length):
        self.table, self.length = table, length

    def tokenize(self, text, **kwargs):
        return [zlib.crc32(word.encode()) % self.table.shape[0] for word in text.split()][:self.length]

    def encode_from_tokens_scheduled(self, tokens, **kwargs):
        cond = torch.zeros(1, self.length, self.table.shape[1])
        if tokens:
            cond[0, :len(tokens)] = self.table[torch.tensor(tokens)]
        return [[cond, {"pooled_output": None}]]


class VAPTestTextEncoderLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),), "type": (list(TEXT_LEN),)},
                "optional": {"device": (["default", "cpu"],)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, clip_name, type, device="default"):
        sd = load_file(folder_paths.get_full_path_or_raise("text_encoders", clip_name))
        return (TinyTextEncoder(sd["embedding.weight"].float(), TEXT_LEN[type]),)


class VAPTestCLIPVisionLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (folder_paths.get_filename_list("clip_vision"),)}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, clip_name):
        path = folder_paths.get_full_path_or_raise("clip_vision", clip_name)
        with safe_open(path, "pt") as f:
            config = f.metadata()["config"]
        config_path = os.path.join(folder_paths.get_temp_directory(), "vap_tiny_clip_vision.json")
        os.makedirs(os.path.dirname(config_path), exist_ok=True)
        with open(config_path, "w") as out:
            out.write(config)
        model = comfy.clip_vision.ClipVisionModel(config_path)
        missing, unexpected = model.load_sd(load_file(path))
        if missing or unexpected:
            raise ValueError(f"tiny CLIP vision file does not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return (model,)


class VAPTestAttentionPatch:
    """An attn2_patch (Wan's blocks call it after their cross-attention) that scales the hidden state and
    logs "VAPTestAttentionPatch ran on block N"."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scale": ("FLOAT", {"default": 0.5})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing"

    def patch(self, model, scale):
        def attn2_patch(args):
            logging.info("VAPTestAttentionPatch ran on block %d", args["transformer_options"]["block_index"])
            return args["x"] * scale
        m = model.clone()
        m.set_model_attn2_patch(attn2_patch)
        return (m,)


class VAPTestExpertCallLog:
    """Logs one line per diffusion model call: "VAPTestExpertCallLog {json}" with the context window it ran
    on (ComfyUI's context windows: its frames, and the anchor frame before it), the latent frames and rows
    the model got, the tokens each of the expert's blocks saw, counted by hooks on the expert's own
    modules (not by the pack), and which of the call's frames the start image gives."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing"

    def patch(self, model):
        m = model.clone()
        (expert,) = m.get_additional_models_with_key("vap_expert")
        blocks = list(expert.model.blocks.values())

        def wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={},
                    **kwargs):
            seen = []
            hooks = [block.self_attn.q.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
                     for block in blocks]
            try:
                out = executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
            finally:
                for hook in hooks:
                    hook.remove()
            window = transformer_options.get("context_window")
            logging.info("VAPTestExpertCallLog %s", json.dumps({
                "window": None if window is None else [window.index_list[0], window.index_list[-1]],
                "anchor": None if window is None else getattr(window, "causal_anchor_index", None),
                "frames": x.shape[2], "rows": x.shape[0], "expert_tokens": seen,
                # Wan I2V's mask channels (after the 16 latent ones): 1 on the frames the start image gives
                "given": [i for i, v in enumerate(x[0, 16:20].float().mean(dim=(0, 2, 3)).tolist()) if v > 0.5]}))
            return out

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "vap_test_expert_call_log", wrapper)
        return (m,)


NODE_CLASS_MAPPINGS = {"VAPTestTextEncoderLoader": VAPTestTextEncoderLoader,
                       "VAPTestCLIPVisionLoader": VAPTestCLIPVisionLoader,
                       "VAPTestAttentionPatch": VAPTestAttentionPatch,
                       "VAPTestExpertCallLog": VAPTestExpertCallLog}
