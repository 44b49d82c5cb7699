"""VAPApplyExpert: attach the expert to its MODEL (Wan 2.1 I2V 14B or CogVideoX-5B-I2V)."""
from __future__ import annotations

import dataclasses
import logging

import comfy.model_base
import comfy.patcher_extension
from comfy_api.latest import io

from ..vap_core.cog_config import CogConfig
from ..vap_core.config import WanConfig
from ..vap_core.errors import IncompatibleExpertError
from ..vap_core.expert_pass import PLACEMENTS
from ..vap_core.fingerprint import fingerprint_matches
from .binding import KEY, VAPExpertWrapper
from .cog_binding import CogExpertWrapper
from .context_windows import KEY as WINDOWS_KEY, cut_image_conditioning, refuse_context_windows
from .choices import CATEGORY, check_choice
from .loaders import ExpertSocket


class VAPApplyExpert(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPApplyExpert",
            display_name="Apply Video-As-Prompt Expert",
            category=CATEGORY,
            description="Attaches the Video-As-Prompt expert to its model: Wan 2.1 I2V 14B, or CogVideoX-5B-I2V for the "
                        "CogVideoX expert (ComfyUI 0.33 and later). The reference itself comes "
                        "through the conditioning (VAP Encode Reference).",
            inputs=[
                io.Model.Input("model", tooltip="Wan 2.1 I2V 14B 480P, or CogVideoX-5B-I2V (Load Diffusion Model)"),
                ExpertSocket.Input("expert", tooltip="from Load VAP Expert"),
                io.Int.Input("rope_delta", default=-1, min=-1, max=1024,
                             tooltip="temporal RoPE offset of the reference, in latent frames: the reference sits at "
                                     "-delta..-delta+F_ref-1. -1 = the reference's latent frame count (the paper's)."),
                io.Combo.Input("placement", options=list(PLACEMENTS), default="sequential", optional=True,
                               tooltip="with several references (chained VAP Encode Reference), where they sit in time "
                                       "before the video: sequential = one after another, the last encoded just "
                                       "before the video; shared = all at the same positions just before it. One "
                                       "reference: both are the paper's. Several references is an experimental use "
                                       "of the released expert, which was trained with one."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="the expert runs from this point of the schedule..."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="...to this one; outside it the model is the plain backbone (and as fast)."),
            ],
            outputs=[io.Model.Output(tooltip="the model with the expert attached, for the sampler")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, expert, rope_delta, start_percent, end_percent, placement="sequential") -> io.NodeOutput:
        check_choice("placement", placement, PLACEMENTS)
        if start_percent > end_percent:
            warn(cls.hidden.unique_id, f"VAP: start_percent {start_percent} is after end_percent {end_percent}, so the "
                 "expert never runs and the reference is ignored. Set start below end (start = end is the off switch).")
        module = expert.model  # expert is the patcher, module the expert (VAPExpert or CogExpert) it holds
        check_backbone(model, module)
        warn_if_other_backbone(model, module)
        wrapper_class = CogExpertWrapper if module.cfg.family == "cog" else VAPExpertWrapper
        m = model.clone()
        m.set_additional_models(KEY, [expert.clone()])
        kinds = comfy.patcher_extension.WrappersMP
        for kind in (kinds.DIFFUSION_MODEL, kinds.APPLY_MODEL, kinds.OUTER_SAMPLE):
            m.remove_wrappers_with_key(kind, KEY)  # one expert per model: a second apply replaces the first
        wrapper = wrapper_class(module, rope_delta=None if rope_delta < 0 else rope_delta, placement=placement,
                                start_percent=start_percent, end_percent=end_percent)
        m.add_wrapper_with_key(kinds.DIFFUSION_MODEL, KEY, wrapper.diffusion_model)
        m.add_wrapper_with_key(kinds.APPLY_MODEL, KEY, wrapper.apply_model)
        m.add_wrapper_with_key(kinds.OUTER_SAMPLE, KEY, wrapper.outer_sample)
        m.remove_wrappers_with_key(kinds.OUTER_SAMPLE, WINDOWS_KEY)
        if not cut_image_conditioning():  # ComfyUI 0.3.64
            m.add_wrapper_with_key(kinds.OUTER_SAMPLE, WINDOWS_KEY, refuse_context_windows)
        return io.NodeOutput(m)


def warn(node_id, message: str):
    """A warning in the console and as text on the node in the UI."""
    logging.warning(message)
    from server import PromptServer  # ComfyUI's server module, only there once ComfyUI runs
    if PromptServer.instance is not None and node_id is not None:
        PromptServer.instance.send_progress_text(message, node_id)


def check_backbone(model, expert):
    """Refuse a MODEL the expert cannot run beside: Wan 2.1 image-to-video (with CLIP image input) for the Wan
    expert, CogVideoX-I2V for the CogVideoX one, each of the expert's size."""
    if expert.cfg.family == "cog" and not hasattr(comfy.model_base, "CogVideoX"):
        raise IncompatibleExpertError(
            "this is the CogVideoX-I2V-5B expert, and this ComfyUI has no CogVideoX: update ComfyUI to 0.33 or "
            "later (its native CogVideoX), or use the Wan 2.1 expert.")
    base = model.model
    if expert.cfg.family == "cog":
        cog_model = comfy.model_base.CogVideoX
        if type(base) is not cog_model or not base.image_to_video or base.diffusion_model.in_channels != 32:
            raise IncompatibleExpertError(
                f"the MODEL is {_describe(base)}. The CogVideoX expert runs beside CogVideoX-5B-I2V: load its "
                "transformer with Load Diffusion Model (or the released VAP checkpoint with Load VAP Checkpoint).")
        expert.check_fits(cog_comfy_config(base.diffusion_model, expert.cfg), "the expert")
        return
    wan = getattr(base, "diffusion_model", None)
    if type(base) is not comfy.model_base.WAN21 or not base.image_to_video or getattr(wan, "img_emb", None) is None:
        raise IncompatibleExpertError(
            f"the MODEL is {_describe(base)}. The VAP expert runs beside Wan 2.1 image-to-video 14B (480P): load "
            "wan2.1_i2v_480p_14B_*.safetensors with Load Diffusion Model.")
    expert.check_fits(comfy_config(wan), "the expert")


def cog_comfy_config(cog, expert_cfg: CogConfig) -> CogConfig:
    """The sizes of ComfyUI's CogVideoX model as vap_core names them. ComfyUI reads neither the sample size nor the
    text length (it allocates the table for 226 + 17550 rows): those are the expert's, if the table holds them."""
    if cog.patch_size_t is not None or cog.ofs_embedding_linear_1 is not None:
        raise IncompatibleExpertError("the MODEL is a CogVideoX 1.5 (temporal patch or ofs embedding); the "
                                      "CogVideoX expert runs beside CogVideoX-5B-I2V (1.0).")
    table = getattr(cog.patch_embed, "pos_embedding", None)
    f, h, w = expert_cfg.grid
    if table is None or expert_cfg.text_len > cog.max_text_seq_length or \
            cog.max_text_seq_length + f * h * w > table.shape[1]:
        raise IncompatibleExpertError("the MODEL has no learned position table for the expert's size: load "
                                      "CogVideoX-5B-I2V's transformer (the released VAP checkpoint's backbone).")
    return dataclasses.replace(
        expert_cfg, num_heads=cog.num_attention_heads, num_layers=len(cog.blocks), head_dim=cog.attention_head_dim,
        in_dim=cog.in_channels, out_dim=cog.out_channels, text_dim=cog.patch_embed.text_proj.in_features,
        time_dim=cog.time_embedding_linear_1.out_features, patch=cog.patch_size)


def comfy_config(wan) -> WanConfig:
    """The sizes of ComfyUI's Wan model as vap_core names them (ComfyUI's CLIP image projection is 1280 wide)."""
    return WanConfig(dim=wan.dim, num_heads=wan.num_heads, ffn_dim=wan.ffn_dim, num_layers=wan.num_layers,
                     in_dim=wan.in_dim, out_dim=wan.out_dim, text_dim=wan.text_dim,
                     image_dim=wan.img_emb.proj[0].normalized_shape[0], freq_dim=wan.freq_dim, eps=wan.eps,
                     patch_size=tuple(wan.patch_size), text_len=wan.text_len)


def _describe(base) -> str:
    kind = type(base).__name__
    if kind == "CogVideoX":
        return "a CogVideoX image-to-video model" if base.image_to_video else "a CogVideoX text-to-video model"
    if kind != "WAN21":
        return {"WAN22": "a Wan 2.2 model", "WAN21_Vace": "a Wan VACE model"}.get(kind, f"a {kind} model")
    if not base.image_to_video:
        return "a Wan text-to-video model"
    return "a Wan image-to-video model without CLIP image input (e.g. Wan 2.2 I2V 14B)"


def warn_if_other_backbone(model, expert):
    recorded = getattr(expert, "vap_metadata", {}).get("backbone_fingerprint")
    if not recorded:
        return
    dit = model.model.diffusion_model
    if not fingerprint_matches(recorded, dit.get_parameter, len(dit.blocks), dit.dim):
        logging.warning("VAP: this Wan model's weights differ from the backbone the expert was trained with "
                        "(Wan2.1-I2V-14B-480P). It will run, but results may be worse; a fine-tune or a 720P model "
                        "is not what the expert expects.")
