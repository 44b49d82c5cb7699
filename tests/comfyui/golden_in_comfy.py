"""One model evaluation through ComfyUI's sampler machinery against the oracle's output, for each golden case.

    COMFY_PYTHON -m tests.comfyui.golden_in_comfy COMFYUI_ROOT BASE_DIR [CASE ...]     (from the pack folder)

BASE_DIR holds custom_nodes/ with the pack (devkit/tiny_models.py). For each case file (Wan 2.1 or CogVideoX, told
apart by its config; without CASE: the public case_comfy and cog_comfy), its backbone in ComfyUI's layout and its
released checkpoint are written under BASE_DIR's models/ (vap_golden/), loaded with the stock UNETLoader and
VAPExpertLoader, and the model is evaluated once under CFG on the conditioning the pack's nodes build from the
case's tensors (cond and uncond rows): with the expert (out.vap), and with an empty step window (out.backbone).
Prints one JSON line per case, {"case": its file name, "max_abs": {...}, ...}, and exits 1 when an error is above
1e-4. The public Wan case also runs the checks of the reference cache, the guider and two references."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from devkit.checkpoints import ORACLE, Case, write_released
from devkit.comfy_process import i2v_conditioning, node_classes, start
from vap_core import VAPTransformer
from vap_core.expert_pass import PLACEMENTS
from vap_core.wan_layer import missing_block_attributes

# ComfyUI's modules are imported where used: only after start() has configured ComfyUI (CPU, base folder)


def conditioning(case_in, row, more_references=()):
    """A CONDITIONING row as CLIPTextEncode + WanImageToVideo + VAPEncodeReference would leave it;
    more_references: (ref_x, ref_context, ref_clip_fea) of further chained VAPEncodeReference nodes."""
    import comfy.latent_formats
    pad = lambda t: torch.nn.functional.pad(t, (0, 0, 0, 512 - t.shape[1]))  # noqa: E731  umT5's zero padding
    references = [(case_in["ref_x"][:1], pad(case_in["ref_context"][row:row + 1]), case_in["ref_clip_fea"][row:row + 1])]
    references += [(ref_x, pad(ref_context[row:row + 1]), ref_clip_fea) for ref_x, ref_context, ref_clip_fea in more_references]
    return i2v_conditioning(pad(case_in["context"][row:row + 1]), case_in["clip_fea"][row:row + 1],
                            comfy.latent_formats.Wan21().process_out(case_in["x"][:, 20:]), references)


def cfg_denoised(model, positive, negative, x16, sigma: float, batched: bool, calls: int = 1) -> dict:
    """One CFG evaluation of latent x16 at sigma through ComfyUI's sampler machinery (`calls` times in one run):
    the denoised predictions of the cond and uncond rows, as the cfg function gets them."""
    import comfy.samplers
    captured = {}

    def keep(args):
        captured["cond"], captured["uncond"] = args["cond_denoised"], args["uncond_denoised"]
        return args["cond"]

    m = model.clone()
    m.set_model_sampler_cfg_function(keep)
    if not batched:
        m.model_options["sampler_calc_cond_batch_function"] = lambda a: [
            comfy.samplers.calc_cond_batch(a["model"], [c], a["input"], a["sigma"], a["model_options"])[0]
            for c in a["conds"]]

    def one_call(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
        for _ in range(calls):
            out = denoiser(x16, sigmas[0] * x16.new_ones(x16.shape[0]), **extra_args)
        return out

    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(positive, negative)
    guider.set_cfg(5.0)
    zeros = torch.zeros_like(x16)
    guider.sample(zeros, zeros, comfy.samplers.KSAMPLER(one_call), torch.tensor([sigma, 0.0]), seed=0)
    return captured


def evaluate(model, case_in, batched: bool, calls: int = 1, more_references=()):
    """A Wan case: the flow predictions of its cond and uncond rows."""
    x16, sigma = case_in["x"][:, :16], float(case_in["t"][0]) / 1000.0
    captured = cfg_denoised(model, conditioning(case_in, 0, more_references), conditioning(case_in, 1, more_references),
                            x16, sigma, batched, calls)
    # CONST flow matching: denoised = x - sigma * model_output
    return [((x16 - captured[k]) / sigma)[row] for k, row in (("cond", 0), ("uncond", 1))]


def evaluate_guider(model, case_in, reference_cfg, negative_row=0, start=0.0, end=1.0, stock=False):
    """One evaluation of latent row 0 through VAPReferenceGuider (or the stock CFGGuider): the model
    output (flow) and the rows the diffusion model was called on."""
    import comfy.samplers
    x16, sigma = case_in["x"][:1, :16], float(case_in["t"][0]) / 1000.0
    rows = []
    hook = model.model.diffusion_model.register_forward_pre_hook(lambda mod, args: rows.append(args[0].shape[0]))
    if stock:
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(conditioning(case_in, 0), conditioning(case_in, negative_row))
        guider.set_cfg(5.0)
    else:
        guider = node_classes()["VAPReferenceGuider"].execute(model, conditioning(case_in, 0), conditioning(case_in, negative_row),
                                                    5.0, reference_cfg, start, end).result[0]
    zeros = torch.zeros_like(x16)

    def one_call(denoiser, x, sigmas, extra_args=None, callback=None, disable=None):
        return denoiser(x16, sigmas[0] * x16.new_ones(1), **extra_args)
    denoised = model.model.process_latent_in(  # sample() hands back the latent in VAE scale
        guider.sample(zeros, zeros, comfy.samplers.KSAMPLER(one_call), torch.tensor([sigma, 0.0]), seed=0))
    hook.remove()
    return (x16 - denoised) / sigma, rows


def evaluate_cog(model, case, batched: bool):
    """A CogVideoX case at its timestep: the v-predictions of its cond and uncond rows."""
    encode = sys.modules[node_classes()["VAPEncodeReference"].__module__]
    x, t = case.tensors["in.x"].float(), int(round(float(case.tensors["in.t"][0])))
    context, ref_x, ref_context = (case.tensors[k].float() for k in ("in.context", "in.ref_x", "in.ref_context"))
    sigma = float(model.get_model_object("model_sampling").sigmas[t])  # the sigma whose timestep is exactly t
    scale = (sigma ** 2 + 1) ** 0.5
    x16, image = x[:, :16], model.model.latent_format.process_out(x[:, 16:])  # the model sees x_t unscaled

    def conditioning(row):  # what the pack's CogVideoX image-to-video and reference nodes leave
        return encode.with_reference([[context[row:row + 1], {"concat_latent_image": image}]], ref_x[:1],
                                     ref_context[row:row + 1], None)
    captured = cfg_denoised(model, conditioning(0), conditioning(1), x16, sigma, batched)
    # V_PREDICTION_DDPM: denoised = (x - v * sigma) / scale
    return [((x16 - captured[k] * scale) / sigma)[row] for k, row in (("cond", 0), ("uncond", 1))]


def load_case(nodes, case: Case):
    """The case's backbone (stock UNETLoader) and its released checkpoint's expert (VAPExpertLoader), from files
    written under BASE_DIR's models/."""
    import folder_paths
    unet = Path(folder_paths.get_folder_paths("diffusion_models")[0]) / "vap_golden" / f"{case.name}.safetensors"
    unet.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in case.group("comfy_backbone").items()}, str(unet))
    write_released(Path(folder_paths.get_folder_paths("vap")[0]) / "vap_golden" / case.name, case.released_weights(),
                   case.checkpoint_config())
    plain = nodes.UNETLoader().load_unet(f"vap_golden/{case.name}.safetensors", "default")[0]
    expert = node_classes()["VAPExpertLoader"].execute(
        f"vap_golden/{case.name}/transformer/diffusion_pytorch_model.safetensors", "default").result[0]
    return case.family, plain, expert


def cog_refused(case: Case) -> list[str]:
    """The messages of VAPCheckpointLoader and of VAPApplyExpert (with the expert VAPExpertLoader reads) on the
    case's released checkpoint, where ComfyUI has no CogVideoX."""
    import folder_paths
    NODE = node_classes()
    name = f"vap_golden/{case.name}/transformer/diffusion_pytorch_model.safetensors"
    write_released(Path(folder_paths.get_folder_paths("vap")[0]) / "vap_golden" / case.name, case.released_weights(),
                   case.checkpoint_config())
    messages = []
    for step in (lambda: NODE["VAPCheckpointLoader"].execute(name, "default", "default"),
                 lambda: NODE["VAPApplyExpert"].execute(None, NODE["VAPExpertLoader"].execute(name, "default").result[0],
                                                        -1, 0.0, 1.0)):
        try:
            step()
            messages.append("no error")
        except Exception as err:
            messages.append(str(err))
    return messages


def check_case(nodes, path: Path, extras: bool) -> dict:
    import comfy.model_base
    case = Case(path.stem, path)
    result = {"case": path.name}
    if case.family == "cog" and not hasattr(comfy.model_base, "CogVideoX"):
        result["skipped"] = cog_refused(case)  # what the pack's nodes say on a ComfyUI without CogVideoX
        return result
    family, plain, expert = load_case(nodes, case)
    NODE = node_classes()
    vap = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0).result[0]
    off = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.3, 0.3).result[0]
    want, want_plain = case.tensors["out.vap"], case.tensors["out.backbone"]
    result.update(family=family, dtype=str(plain.model.get_dtype()),
                  expert_dtype=str(next(expert.model.blocks.parameters()).dtype))
    for name, model, reference in (("batched", vap, want), ("one_at_a_time", vap, want), ("window_empty", off, want_plain)):
        rows = (evaluate_cog(model, case, batched=name != "one_at_a_time") if family == "cog" else
                evaluate(model, case.inputs(), batched=name != "one_at_a_time"))
        result[name] = [float((out - reference[i]).abs().max()) for i, out in enumerate(rows)]
    result["max_abs"] = {"out.vap": max(result["batched"] + result["one_at_a_time"]),
                         "out.backbone": max(result["window_empty"])}
    result["expert_effect"] = float((want - want_plain).abs().max())
    if extras and family == "wan":
        result.update(wan_extras(plain, expert, vap, case))
    return result


def main(comfy_root: str, base: str, *cases: str):
    nodes = start(comfy_root, base)
    paths = [Path(c) for c in cases] or [ORACLE / f"{name}.safetensors" for name in ("case_comfy", "cog_comfy")]
    failed = False
    with torch.no_grad():
        for path in paths:
            try:
                result = check_case(nodes, path, extras=not cases)
            except Exception as err:  # one case ComfyUI cannot load (e.g. a CLIP width other than 1280) fails alone
                result = {"case": path.name, "error": f"{type(err).__name__}: {err}"[:2000]}
            failed |= "error" in result or any(err > 1e-4 for err in result.get("max_abs", {}).values())
            print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


def wan_extras(plain, expert, vap, case) -> dict:
    """The reference cache, the guider and two references, on the public Wan case."""
    import folder_paths
    NODE = node_classes()
    case_in = case.inputs()
    want, want_plain = case.tensors["out.vap"], case.tensors["out.backbone"]
    result = {}
    embeddings = []
    hook = expert.model.patch_embedding.register_forward_hook(lambda *a: embeddings.append(1))
    rows = evaluate(vap, case_in, batched=True, calls=3)
    result["three_calls"] = [float((out - want[i]).abs().max()) for i, out in enumerate(rows)]
    result["reference_embeddings_in_a_run_of_three_calls"] = len(embeddings)
    evaluate(vap, case_in, batched=True)  # the next run of the same model: the cache went with the last run
    hook.remove()
    result["reference_embeddings_in_the_next_run"] = len(embeddings) - result["reference_embeddings_in_a_run_of_three_calls"]

    # reference guidance on latent row 0 with its own caption as the negative too (so cfg's term is 0):
    # the output is cond + reference_cfg * (cond - cond_noref) = out.vap[0] + r * (out.vap[0] - out.backbone[0])
    result["guider"] = {}
    for r in (0.5, 2.0, -1.0):
        out, rows = evaluate_guider(vap, case_in, r)
        expected = want[0] + r * (want[0] - want_plain[0])
        result["guider"][str(r)] = {"error": float((out[0] - expected).abs().max()), "rows": rows}
    # reference_cfg 0, or an empty window: the stock CFGGuider exactly, with its calls
    stock, stock_rows = evaluate_guider(vap, case_in, 0.0, negative_row=1, stock=True)
    for name, kwargs in (("zero", {}), ("window_closed", {"start": 0.5, "end": 0.5}), ("window_later", {"start": 0.9})):
        out, rows = evaluate_guider(vap, case_in, 0.0 if name == "zero" else 3.0, negative_row=1, **kwargs)
        result["guider"][name] = {"equal_to_cfg_guider": bool(torch.equal(out, stock)), "rows": rows,
                                  "cfg_guider_rows": stock_rows}

    # two references, as two chained VAPEncodeReference nodes leave them, against vap_core's standalone
    # model (the paper's released checkpoint) with the same two references
    g = torch.Generator().manual_seed(3)
    ref_x = case_in["ref_x"][:1]
    second = (torch.randn(1, ref_x.shape[1], 2, *ref_x.shape[3:], generator=g),
              torch.randn(2, 7, case_in["ref_context"].shape[2], generator=g),
              torch.randn(1, *case_in["ref_clip_fea"].shape[1:], generator=g))
    standalone = VAPTransformer.from_checkpoint(
        folder_paths.get_full_path("vap", f"vap_golden/{case.name}/transformer/diffusion_pytorch_model.safetensors"))
    result["two_references"] = {}
    for placement in PLACEMENTS:
        model = NODE["VAPApplyExpert"].execute(plain, expert, -1, 0.0, 1.0, placement).result[0]
        rows = evaluate(model, case_in, batched=True, more_references=[second])
        expected = standalone(
            case_in["x"], case_in["t"], case_in["context"], case_in["clip_fea"], placement=placement,
            ref_x=[ref_x, second[0]], ref_context=[case_in["ref_context"], second[1]],
            ref_clip_fea=[case_in["ref_clip_fea"], second[2]])
        result["two_references"][placement] = [float((out - expected[i]).abs().max()) for i, out in enumerate(rows)]
    result["second_reference_effect"] = float((expected - want).abs().max())
    result["block_attributes_missing"] = missing_block_attributes(plain.model.diffusion_model.blocks[0])
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
