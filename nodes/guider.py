"""VAPReferenceGuider: classifier-free guidance with a separate strength for the reference.

Per step, where reference guidance is active, three predictions: uncond (negative prompts, with the
reference, as the paper), cond (positive, with the reference) and cond_noref (positive without it:
plain Wan), combined as

    uncond + cfg * (cond - uncond) + reference_cfg * (cond - cond_noref).

The reference term is folded into cond (cond + reference_cfg / cfg * (cond - cond_noref)) before
ComfyUI's own cfg_function, so the model's sampler-cfg and post-cfg patches see the guided result.
With reference_cfg 0, or outside its window, this is the stock CFGGuider, call for call.

dynamic_cfg is the CogVideoX pipeline's `use_dynamic_cfg` (the paper's CogVideoX sampling): the scale of each step
is 1 + cfg * (1 - cos(pi * ((N - t) / N) ** 5)) / 2, with t the step's timestep in the model's 0..999 units and N
the run's number of steps, exactly as that pipeline computes it.
"""
from __future__ import annotations

import math

import comfy.samplers
from comfy_api.latest import io

from .choices import CATEGORY
from .reference_cond import without_reference
from .schedule import in_window, sigma_window


def dynamic_scale(cfg: float, t: float, steps: int) -> float:
    """The CogVideoX pipeline's dynamic guidance scale at timestep t of a run of `steps` steps."""
    return 1 + cfg * (1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2


class ReferenceGuider(comfy.samplers.CFGGuider):
    def __init__(self, model_patcher, reference_cfg: float, start_percent: float, end_percent: float,
                 dynamic_cfg: bool = False):
        super().__init__(model_patcher)
        self.reference_cfg, self.start_percent, self.end_percent = reference_cfg, start_percent, end_percent
        self.dynamic_cfg = dynamic_cfg
        self._window = None  # where reference guidance is active: set per sampling run
        self._steps = None  # the run's number of steps, for dynamic_cfg

    def set_conds(self, positive, negative):
        self.inner_set_conds({"positive": positive, "negative": negative,
                              "positive_noref": without_reference(positive)})

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, *args, **kwargs):
        self._window = None if self.reference_cfg == 0 else sigma_window(self.model_patcher, self.start_percent,
                                                                         self.end_percent)
        self._steps = len(sigmas) - 1
        return super().inner_sample(noise, latent_image, device, sampler, sigmas, *args, **kwargs)

    def scale_at(self, sigma) -> float:
        """The guidance scale of the step at `sigma`."""
        if not self.dynamic_cfg:
            return self.cfg
        t = float(self.model_patcher.get_model_object("model_sampling").timestep(sigma.flatten()[:1])[0])
        return dynamic_scale(self.cfg, t, self._steps)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        cfg = self.scale_at(timestep)
        if not in_window(self._window, float(timestep.flatten()[0])):
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, self.conds.get("negative"),
                                                    self.conds.get("positive"), cfg, model_options=model_options,
                                                    seed=seed)
        cond, noref = self.conds.get("positive"), self.conds.get("positive_noref")
        uncond = self.conds.get("negative")
        if math.isclose(cfg, 1.0) and not model_options.get("disable_cfg1_optimization", False):
            uncond = None  # as ComfyUI's sampling_function: cfg 1 needs no uncond pass
        conds = [cond, uncond, noref]
        if "sampler_calc_cond_batch_function" in model_options:
            out = model_options["sampler_calc_cond_batch_function"](
                {"conds": conds, "input": x, "sigma": timestep, "model": self.inner_model, "model_options": model_options})
        else:
            out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        cond_pred, uncond_pred, noref_pred = out
        for fn in model_options.get("sampler_pre_cfg_function", []):
            cond_pred, uncond_pred = fn({"conds": conds[:2], "conds_out": [cond_pred, uncond_pred], "cond_scale": cfg,
                                         "timestep": timestep, "input": x, "sigma": timestep, "model": self.inner_model,
                                         "model_options": model_options})
        if cfg == 0:  # nothing to fold the reference term into
            return comfy.samplers.cfg_function(self.inner_model, cond_pred, uncond_pred, 0.0, x, timestep, model_options,
                                               cond, uncond) + self.reference_cfg * (cond_pred - noref_pred)
        guided = cond_pred + (self.reference_cfg / cfg) * (cond_pred - noref_pred)
        return comfy.samplers.cfg_function(self.inner_model, guided, uncond_pred, cfg, x, timestep, model_options,
                                           cond, uncond)


class VAPReferenceGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VAPReferenceGuider",
            display_name="Video-As-Prompt Reference Guidance",
            category=CATEGORY,
            description="CFG with a separate strength for the reference video, for SamplerCustomAdvanced: "
                        "uncond + cfg * (cond - uncond) + reference_cfg * (cond - cond without the reference). "
                        "reference_cfg 0 is the paper's sampling (the stock CFGGuider); above 0 each step where it "
                        "is active costs one plain Wan call more.",
            inputs=[
                io.Model.Input("model", tooltip="the Wan model with the expert applied (Apply VAP Expert)"),
                io.Conditioning.Input("positive", tooltip="VAP Encode Reference's positive"),
                io.Conditioning.Input("negative", tooltip="VAP Encode Reference's negative"),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="the usual classifier-free guidance scale (5: the paper's)"),
                io.Float.Input("reference_cfg", default=0.0, min=-10.0, max=100.0, step=0.1, round=0.01,
                               tooltip="how much more the result follows the reference than the paper's sampling "
                                       "does: 0 = the paper's; 1 to 3 for a stronger reference"),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="reference guidance runs from this point of the schedule..."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="...to this one (outside it: plain CFG, no extra call)"),
                io.Boolean.Input("dynamic_cfg", default=False, optional=True,
                                 tooltip="CogVideoX's dynamic guidance (the paper's CogVideoX sampling: on, with cfg 6 "
                                         "and 50 steps): each step's scale is 1 + cfg * (1 - cos(pi * ((N - t) / N)^5)) "
                                         "/ 2, t its timestep (0..999), N the steps. Off for Wan."),
            ],
            outputs=[io.Guider.Output(tooltip="for SamplerCustomAdvanced")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, reference_cfg, start_percent, end_percent,
                dynamic_cfg=False) -> io.NodeOutput:
        guider = ReferenceGuider(model, reference_cfg, start_percent, end_percent, dynamic_cfg)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return io.NodeOutput(guider)
