"""What VAP costs next to plain Wan and next to DiffSynth-Studio's VAP, measured side by side.

    python -m benchmarks            # every section that can run here
    bash benchmarks/run             # the same from a fresh clone (makes .venv-bench with the peer)

Timings alternate between the things compared and report medians and ratios, since these machines
are noisy; absolute times are for orientation only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from devkit import comfy_server as harness

from . import cancel, cog, core, peer

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = ("core", "cog", "peer", "comfy", "comfy_cog", "long", "loading", "video", "gpu", "comfy_gpu", "cancel")
IN_COMFY = ("comfy", "comfy_cog", "long", "loading", "comfy_gpu", "cancel")  # the sections that run a ComfyUI
TARGET = 1.1  # measured ratio may exceed the FLOP model's by at most 10%


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def section_core(args):
    print("\n## 1. vap_core: one VAP model call / one plain Wan call (float32, CPU, reference embedded once)\n")
    print("| size | plain ms | VAP ms | measured ratio | FLOP-model ratio | measured / FLOP | target <= 1.10 |")
    print("|---|---|---|---|---|---|---|")
    for r in core.run(args.repeats):
        rel = r["ratio"] / r["flop_ratio"]
        print(f"| {r['size']} | {r['plain_s'] * 1e3:.0f} | {r['vap_s'] * 1e3:.0f} | {r['ratio']:.3f} | "
              f"{r['flop_ratio']:.3f} | {rel:.3f} | {_mark(rel <= TARGET)} |")
    print("\nSeveral references (each as long as the target): a VAP call with N / with one\n")
    print("| size | references | ms | measured ratio | FLOP-model ratio | measured / FLOP |")
    print("|---|---|---|---|---|---|")
    for r in core.run_references(args.repeats):
        print(f"| {r['size']} | {r['references']} | {r['s'] * 1e3:.0f} | {r['ratio']:.3f} | {r['flop_ratio']:.3f} | "
              f"{r['ratio'] / r['flop_ratio']:.3f} |")


def section_cog(args):
    print("\n## 1b. vap_core, CogVideoX-I2V: one VAP model call / one plain call (float32, CPU, 226 text tokens, "
          "experts on every layer but the last)\n")
    print("| size | plain ms | VAP ms | measured ratio | FLOP-model ratio | measured / FLOP | target <= 1.10 | "
          "2 refs ms | second reference: measured | FLOP model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in cog.run(args.repeats):
        rel = r["ratio"] / r["flop_ratio"]
        print(f"| {r['size']} | {r['plain_s'] * 1e3:.0f} | {r['vap_s'] * 1e3:.0f} | {r['ratio']:.3f} | "
              f"{r['flop_ratio']:.3f} | {rel:.3f} | {_mark(rel <= TARGET)} | {r['two_s'] * 1e3:.0f} | "
              f"{r['second_ratio']:.3f} | {r['second_flop_ratio']:.3f} |")


def section_peer(args):
    print("\n## 2. vap_core vs DiffSynth-Studio's VAP, equal sizes (float32, CPU, one call)\n")
    rows = peer.run(args.repeats)
    if isinstance(rows, str):
        print(f"skipped: {rows}")
        return
    print("ours: the reference embedded once per sampling run, as the pack runs; 'ours, embedding each call' "
          "re-embeds it every call as DiffSynth does.\n")
    print("| size | ours ms | ours, embedding each call ms | DiffSynth ms | DiffSynth / ours | "
          "ours peak RSS MiB | DiffSynth peak RSS MiB | faster |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['ours_s'] * 1e3:.0f} | {r['ours_each_s'] * 1e3:.0f} | {r['diffsynth_s'] * 1e3:.0f} | "
              f"{r['speedup']:.2f} | {r['ours_rss'] / 2**20:.0f} | {r['diffsynth_rss'] / 2**20:.0f} | "
              f"{_mark(r['speedup'] > 1)} |")


def _comfy():
    root, why = harness.find_comfyui()
    python, why = harness.comfy_python(root) if root else (None, why)
    return root, python, why


def _comfy_or_skip():
    """(ComfyUI folder, its Python), or None after saying why the section is skipped."""
    root, python, why = _comfy()
    if python is None:
        print(f"skipped: {why}")
        return None
    return root, python


def _comfy_json(python, root, module, *args):
    return _comfy_lines(python, root, module, *args)[-1]


def _comfy_lines(python, root, module, *args) -> list:
    """The JSON lines a script run with ComfyUI's Python prints."""
    proc = harness.run_module(python, module, root, *args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def section_comfy(args, base):
    print("\n## 3. Inside ComfyUI: one KSampler step (cfg 5, both rows) of the VAP graph / the plain Wan graph\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    r = _comfy_json(python, root, "benchmarks.comfy_step", base, args.repeats)
    rel = r["ratio"] / r["flop_ratio"]
    print("| backbone | plain s/step | VAP s/step | measured ratio | FLOP-model ratio | measured / FLOP | target <= 1.10 |")
    print("|---|---|---|---|---|---|---|")
    print(f"| d512 L8, expert at 0 and 4, {r['tokens']} tokens/stream | {r['plain_step_s']:.2f} | {r['vap_step_s']:.2f} | "
          f"{r['ratio']:.3f} | {r['flop_ratio']:.3f} | {rel:.3f} | {_mark(rel <= TARGET)} |")
    rel = r["guidance_ratio"] / r["guidance_flop_ratio"]
    print("\nVAPReferenceGuider, one step (SamplerCustom path, euler): reference_cfg 1 / reference_cfg 0 (= CFGGuider)\n")
    print("| reference_cfg 0 s/step | reference_cfg 1 s/step | measured ratio | FLOP-model ratio | measured / FLOP |")
    print("|---|---|---|---|---|")
    print(f"| {r['cfg_guider_step_s']:.2f} | {r['reference_guided_step_s']:.2f} | {r['guidance_ratio']:.3f} | "
          f"{r['guidance_flop_ratio']:.3f} | {rel:.3f} |")


def section_comfy_cog(args, base):
    print("\n## 3b. Inside ComfyUI 0.33: one KSampler step (cfg 6, both rows) of VAP-CogVideoX / ComfyUI's own plain "
          "CogVideoX, same backbone, PyTorch's attention (ComfyUI's choice on a GPU; its CPU default kernel costs "
          "more per token at the joint attention's doubled length)\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    if harness.comfy_version(root) < (0, 33):
        print(f"skipped: ComfyUI {'.'.join(map(str, harness.comfy_version(root)))} has no CogVideoX (0.33 has)")
        return
    r = _comfy_json(python, root, "benchmarks.comfy_cog_step", base, args.repeats)
    rel = r["ratio"] / r["flop_ratio"]
    print("| backbone | plain s/step | VAP s/step | measured ratio | FLOP-model ratio | measured / FLOP | "
          "target <= 1.10 | expert off (empty window) / plain |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| d384 L4, experts at 0-2, {r['tokens']} video + 226 text tokens | {r['plain_step_s']:.2f} | "
          f"{r['vap_step_s']:.2f} | {r['ratio']:.3f} | {r['flop_ratio']:.3f} | {rel:.3f} | {_mark(rel <= TARGET)} | "
          f"{r['off_ratio']:.3f} |")


def section_long(args, base):
    print("\n## 3c. Inside ComfyUI: the long-video template (161 frames, Wan Context Windows 49/24) / an 81-frame "
          "video in one call, per output frame (one KSampler step, cfg 5, 49-frame reference)\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    r = _comfy_json(python, root, "benchmarks.long_video", base, args.repeats)
    print("| video | latent frames per call | s/step | ms/step per frame | FLOP per frame (G) |")
    print("|---|---|---|---|---|")
    for row in r["rows"]:
        print(f"| {row['video']} | {row['calls']} | {row['step_s']:.2f} | {row['step_s_per_frame'] * 1e3:.1f} | "
              f"{row['flops_per_frame'] / 1e9:.2f} |")
    print(f"\ncost per frame, long / 81 frames: measured {r['ratio']:.2f}, FLOP model {r['flop_ratio']:.2f} "
          "(d512 L8, expert at 0 and 4, 128x128)")


def section_loading(args, base):
    print("\n## 4. VAPExpertLoader on a released-layout checkpoint (backbone 6x the expert for Wan, 12x for CogVideoX), "
          "fresh process each\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    script = "tests.comfyui.loader_memory"
    families = ("wan", "cog") if harness.comfy_version(root) >= (0, 33) else ("wan",)  # CogVideoX: ComfyUI 0.33
    print("| family | expert bf16 / backbone MiB (file) | dtype | expert loaded MiB | seconds | peak RSS added MiB | "
          "peak - expert MiB |")
    print("|---|---|---|---|---|---|---|")
    for family in families:
        sizes = _comfy_json(python, root, script, base, "write", family)
        for dtype in ("bf16", "default", "fp8_e4m3fn"):
            r = _comfy_json(python, root, script, base, f"expert:{dtype}", family)
            print(f"| {family} | {sizes['expert_bytes'] / 2**20:.0f} / {sizes['backbone_bytes'] / 2**20:.0f} | {dtype} | "
                  f"{r['expert_bytes'] / 2**20:.0f} | {r['seconds']:.2f} | {r['peak_added'] / 2**20:.0f} | "
                  f"{(r['peak_added'] - r['expert_bytes']) / 2**20:.0f} |")


def section_video(args):
    print("\n## 5. Reading a reference video: 49 frames 'evenly' from a 60 s 1080p30 H.264 clip, fresh process each\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "benchmarks.reference_video", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, check=True, cwd=ROOT).stdout
    from .reference_video import CLIPS
    print("before: decodes the whole clip twice, single-threaded, keeps full-resolution float32 frames; "
          "after: vap_core.video (packets counted, only the keyframe runs up to each chosen frame decoded, "
          "threaded, frames scaled to 832 as kept). Clips: see CLIPS in benchmarks/reference_video.py\n")
    print("| clip | reader | seconds (median) | peak RSS growth MiB | output MiB | frames |")
    print("|---|---|---|---|---|---|")
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="vap_clip_") as tmp:
        for kind in CLIPS:
            clip = Path(tmp) / f"{kind}_1080p30.mp4"
            run("write", clip, args.clip_seconds, kind)
            rows = {"before": [], "after": []}
            for _ in range(max(1, args.repeats // 2)):  # alternating
                for what in rows:
                    rows[what].append(json.loads(run(what, clip).strip().splitlines()[-1]))
            clip.unlink()
            for what, runs in rows.items():
                seconds = sorted(r["seconds"] for r in runs)[len(runs) // 2]
                growth = max(r["rss_growth"] for r in runs)
                print(f"| {kind} | {what} | {seconds:.2f} | {growth / 2**20:.0f} | "
                      f"{runs[0]['output_bytes'] / 2**20:.0f} | {'x'.join(map(str, runs[0]['shape']))} |")
            before, after = (sorted(r["seconds"] for r in rows[w])[len(rows[w]) // 2] for w in ("before", "after"))
            over = max(r["rss_growth"] for r in rows["after"]) - rows["after"][0]["output_bytes"]
            ratios[kind] = (after / before, over)
    for kind, (ratio, over) in ratios.items():
        print(f"\n{kind}: after / before time {ratio:.2f} (target <= 0.5: {_mark(ratio <= 0.5)}); after's growth - "
              f"output: {over / 2**20:.0f} MiB (target <= 200: {_mark(over <= 200 * 2**20)})")


def section_gpu(args):
    print("\n## 6. GPU at Wan 14B sizes\n")
    if not torch.cuda.is_available():
        print("skipped: no CUDA device in this process (run this on a GPU machine: python -m benchmarks --only gpu)")
        return
    from . import gpu
    gpu.run(args.repeats)


def section_comfy_gpu(args, base):
    print("\n## 7. The ComfyUI path at Wan 2.1 I2V 14B sizes on a GPU: stock UNETLoader (random bf16 weights), "
          "the released expert's shape, KSampler cfg 5, 480x832x49\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    gpu = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True,
                         text=True).stdout.strip() == "True"
    if gpu:
        rows = _comfy_lines(python, root, "benchmarks.comfy_gpu", base, "14b")
        rows += _comfy_lines(python, root, "benchmarks.comfy_gpu", base, "14b", 24)
    else:
        print("no GPU for ComfyUI's Python: the same code at a tiny size on the CPU instead (its figures only show "
              "that it runs)\n")
        rows = _comfy_lines(python, root, "benchmarks.comfy_gpu", base, "tiny")
    print(f"device: {rows[0]['device']}, {rows[0]['tokens']} tokens per stream\n")
    print("| weights / expert | VRAM limit | plain s/step | VAP s/step | measured ratio | FLOP-model ratio | "
          "plain TFLOP/s | VAP TFLOP/s | peak VRAM GiB (VAP) | loaded / size GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = "n/a" if r["vap_peak_vram_gb"] is None else f"{r['vap_peak_vram_gb']:.1f}"
        loaded = ", ".join(f"{name} {a:.2f}/{b:.2f}" for name, (a, b) in r["loaded"].items())
        print(f"| {r['weights']} / {r['expert']} | {r['vram_limit_gb'] or 'none'} | {r['plain_step_s']:.2f} | "
              f"{r['vap_step_s']:.2f} | {r['ratio']:.3f} | {r['flop_ratio']:.3f} | {r['plain_tflops']:.1f} | "
              f"{r['vap_tflops']:.1f} | {peak} | {loaded} |")


def section_cancel(args, base):
    print("\n## 8. Cancel over HTTP: POST /interrupt to the server's execution_interrupted message, tiny models, CPU\n")
    if not (found := _comfy_or_skip()):
        return
    root, python = found
    rows = cancel.run(root, python, base, max(1, args.repeats))
    print(f"reading: a {cancel.CLIP_SECONDS} s 1080p30 clip (x264 ultrafast), interrupted at its first kept frame; "
          "sampling: the tiny model with the expert, interrupted at its second step\n")
    print("| while | runs | seconds to stop (median) | max | one sampling step s | stopped in node |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        step = "n/a" if r["step_s"] is None else f"{r['step_s']:.3f}"
        print(f"| {r['phase']} | {r['runs']} | {r['median_s']:.3f} | {r['max_s']:.3f} | {step} | "
              f"{', '.join(map(str, r['stopped_in']))} (expected {r['expected']}) |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each thing compared (default: 5)")
    parser.add_argument("--clip-seconds", type=int, default=60, help="length of the clip the video section reads")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    print(f"# VAP benchmarks (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory(prefix="vap_bench_") as tmp:
        base = Path(tmp)
        root, python, _ = _comfy()
        if python is not None and (set(IN_COMFY) & set(chosen)):
            harness.prepare_base(base, python, root)
        for name in chosen:
            fn = globals()[f"section_{name}"]
            fn(args, base) if name in IN_COMFY else fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
