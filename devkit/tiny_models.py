"""Tiny random models, in the real key layouts, under the file names the shipped workflow uses,
plus a start image and reference videos. Runs with ComfyUI's Python (it reads ComfyUI's module
shapes), from the pack folder:  python -m devkit.tiny_models BASE_DIR COMFYUI_ROOT
(BASE_DIR is a ComfyUI --base-directory)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from devkit.checkpoints import Case, random_like, random_tensor, write_random_expert, write_released
from devkit.clips import write_clip
from devkit.tiny_names import *  # noqa: F403  (the file names it writes)
from vap_core.loading import module_shapes
from vap_core.config import WanConfig
from vap_core.safetensors_writer import write_streaming

TINY_CLIP_VISION = {"hidden_size": 1280, "intermediate_size": 256, "num_attention_heads": 16, "num_hidden_layers": 2,
                    "image_size": 224, "patch_size": 14, "projection_dim": 64, "num_channels": 3, "hidden_act": "gelu",
                    "layer_norm_eps": 1e-5, "model_type": "clip_vision_model"}
TEXT_VOCAB = 1024


def meta_shapes(build) -> dict:
    with torch.device("meta"):
        return module_shapes(build())


def wider(backbone: dict) -> dict:
    """Random Wan 2.1 I2V weights twice as wide as `backbone` (same depth, ComfyUI's head rule)."""
    from vap_core.backbone import WanI2V
    dim = 2 * backbone["head.modulation"].shape[-1]
    layers = len({k.split(".")[1] for k in backbone if k.startswith("blocks.")})
    cfg = WanConfig(dim=dim, num_heads=dim // 128, ffn_dim=2 * dim, num_layers=layers)
    return random_like(meta_shapes(lambda: WanI2V(cfg)), 8)


def write_vae(path: Path):
    import comfy.ldm.wan.vae
    shapes = meta_shapes(lambda: comfy.ldm.wan.vae.WanVAE(
        dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
        temperal_downsample=[False, True, True], dropout=0.0))
    save_file(random_like(shapes, 1), str(path))


def write_cog_vae(path: Path):
    """A random CogVideoX VAE of the real size (bf16, 430 MB, streamed), in the layout the stock VAELoader reads."""
    import comfy.ldm.cogvideo.vae
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in comfy.ldm.cogvideo.vae.AutoencoderKLCogVideoX(latent_channels=16)
                  .state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    write_streaming(path, [(n, torch.bfloat16, s) for n, s in shapes.items()],
                    lambda n: random_tensor(n, shapes[n], gen).to(torch.bfloat16), {})


def write_cog(models: Path):
    """The cog_comfy golden case's tiny CogVideoX-I2V: its backbone for UNETLoader, its released checkpoint
    (backbone and expert) in models/vap; the VAE where this ComfyUI has CogVideoX."""
    case = Case("cog_comfy")
    save_file({k: v.contiguous() for k, v in case.group("comfy_backbone").items()},
              str(models / "diffusion_models" / COG_UNET))
    write_released(models / "vap" / COG_RELEASED, case.released_weights(), case.checkpoint_config(), shards=2)
    if importlib.util.find_spec("comfy.ldm.cogvideo") is not None:
        write_cog_vae(models / "vae" / COG_VAE)


def write_clip_vision(path: Path):
    import comfy.clip_model
    import comfy.ops
    shapes = meta_shapes(lambda: comfy.clip_model.CLIPVisionModelProjection(
        TINY_CLIP_VISION, torch.float32, "meta", comfy.ops.manual_cast))
    save_file(random_like(shapes, 2), str(path), metadata={"config": json.dumps(TINY_CLIP_VISION)})


def write_text_encoder(path: Path):
    g = torch.Generator().manual_seed(3)
    save_file({"embedding.weight": torch.randn(TEXT_VOCAB, 4096, generator=g).to(torch.bfloat16)}, str(path))


def write_videos(input_dir: Path):
    from PIL import Image
    g = np.random.default_rng(4)
    Image.fromarray(g.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(input_dir / START_IMAGE)
    write_video(input_dir / REFERENCE, 17, seed=5)
    write_video(input_dir / SHORT_REFERENCE, 3, seed=6)
    frames = [Image.fromarray(g.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(11)]
    frames[0].save(input_dir / GIF_REFERENCE, save_all=True, append_images=frames[1:], duration=100, loop=0)
    (input_dir / NOT_A_VIDEO).write_bytes(b"this is not a video file\n" * 10)


def write_video(path: Path, frames: int, seed: int):
    g = np.random.default_rng(seed)
    write_clip(path, (np.clip(g.normal(128, 60, (SIZE, SIZE, 3)) + i * 8, 0, 255).astype(np.uint8)
                      for i in range(frames)))


def write_all(base: Path, cog: bool = True):
    """Every tiny model and test input; cog=False leaves out the CogVideoX ones (their VAE alone is 430 MB)."""
    models, input_dir = base / "models", base / "input"
    for sub in ("diffusion_models", "vae", "text_encoders", "clip_vision", "vap"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    case = Case("case_comfy")
    backbone = {k: v.contiguous() for k, v in case.group("comfy_backbone").items()}
    save_file(backbone, str(models / "diffusion_models" / UNET))
    save_file(backbone, str(models / "vap" / NOT_AN_EXPERT))
    t2v = {k: v for k, v in backbone.items() if not k.startswith("img_emb.") and "_img" not in k}
    t2v["patch_embedding.weight"] = backbone["patch_embedding.weight"][:, :16].contiguous()
    save_file(t2v, str(models / "diffusion_models" / T2V_UNET))
    save_file(wider(backbone), str(models / "diffusion_models" / WIDE_UNET))
    other = dict(backbone, **{k: backbone[k] + 0.5 for k in ("head.modulation", "blocks.0.modulation")})
    save_file(other, str(models / "diffusion_models" / RETRAINED_UNET))
    (models / "loras").mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(7)
    dim = backbone["blocks.0.self_attn.q.weight"].shape[0]
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.randn(4, dim, generator=g) * 0.5,
               "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.randn(dim, 4, generator=g) * 0.5},
              str(models / "loras" / LORA))
    write_released(models / "vap" / RELEASED, case.released_weights(), case.config, shards=2)
    cfg, gen = WanConfig.from_diffusers(case.config), torch.Generator().manual_seed(8)
    for name, change in ((OTHER_TEXT_WIDTH_EXPERT, {"text_dim": 512}), (OTHER_PATCH_EXPERT, {"patch_size": (1, 4, 4)})):
        write_random_expert(models / "vap" / name, dataclasses.replace(cfg, **change), case.config["block_idx_with_mot_ref"], gen)
    write_vae(models / "vae" / VAE)
    write_text_encoder(models / "text_encoders" / TEXT_ENCODER)
    if cog:
        write_text_encoder(models / "text_encoders" / COG_TEXT_ENCODER)
        write_cog(models)
    write_clip_vision(models / "clip_vision" / CLIP_VISION)
    write_videos(input_dir)


if __name__ == "__main__":
    # python -m devkit.tiny_models BASE [COMFY_ROOT] [--no-cog]
    cog = "--no-cog" not in sys.argv
    argv = [a for a in sys.argv if a != "--no-cog"]
    comfy_root = Path(argv[2]) if len(argv) > 2 else None
    if comfy_root:
        sys.path.insert(0, str(comfy_root))  # ComfyUI's modules, for their shapes
    from comfy.cli_args import args
    args.cpu = True  # before comfy.model_management is imported
    write_all(Path(argv[1]), cog)
    print("tiny models written")
