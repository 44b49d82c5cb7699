"""Test-only ComfyUI loaders for the tiny text encoder (Wan's or CogVideoX's) and CLIP vision model that tiny_models.py
writes (the stock loaders always build the full-size models). They take the same inputs as
CLIPLoader and CLIPVisionLoader, so a workflow switches to them by class_type alone. And a stand-in
for another pack's attention patch on Wan's blocks, which logs the blocks it ran on."""
import logging
import os
import zlib

import comfy.clip_vision
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


NODE_CLASS_MAPPINGS = {"VAPTestTextEncoderLoader": VAPTestTextEncoderLoader,
                       "VAPTestCLIPVisionLoader": VAPTestCLIPVisionLoader,
                       "VAPTestAttentionPatch": VAPTestAttentionPatch}
