"""DiffSynth-Studio's Video-As-Prompt model as a benchmark peer, at small random sizes on CPU.

DiffSynth (PyPI `diffsynth`) is imported and called, never copied: the Wan DiT is its
`diffsynth.models.wan_video_dit.WanModel`, the VAP expert its `diffsynth.models.wan_video_mot.MotWanModel`,
and one call is its pipeline's per-step model function `diffsynth.pipelines.wan_video.model_fn_wan_video`
with the `vap` model and the reference inputs (`vap_hidden_state`, `vap_clip_feature`, `context_vap`)
that its VAP pipeline unit prepares.

    from benchmarks import diffsynth_peer
    ok, why = diffsynth_peer.available()
    peer = diffsynth_peer.build(dim=256, num_heads=2, ffn_dim=512, num_layers=2, expert_layers=[0])
    out = peer(x, t, context, clip_fea, ref_x, ref_context, ref_clip_fea)   # (B, 16, F, H, W)

Install (on top of torch and the pack's requirements):
    pip install --no-deps -r benchmarks/requirements-peer.txt

Import shims (applied only while diffsynth is being imported, and only where needed):
  * DiffSynth's package imports many libraries at import time for its other models, data loading and
    downloads (transformers, modelscope, pandas, imageio, ...). The VAP computation itself uses only
    torch, einops and numpy. Each library in _IMPORT_ONLY that is not importable here is replaced by an
    inert stand-in module for the duration of the import (any use of it raises), then removed from
    sys.modules again, so other code in the process sees the environment as it was.
  * torchvision from PyPI is a CUDA build whose compiled ops cannot load with a CPU torch; importing it
    then fails on its operator registrations. Where that happens, its operator schemas are declared
    (no kernels) by tools/torchvision_cpu_shim.py and the import retried.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import math
import sys
import types

import torch

DIFFSYNTH_VERSION = "2.1.12"
INSTALL_HINT = ("pip install --no-deps -r benchmarks/requirements-peer.txt "
                f"(diffsynth=={DIFFSYNTH_VERSION}; never let pip resolve its dependencies: they pull another torch)")

# Wan 2.1 I2V constants (the 14B 480P model's, apart from the sizes given to build()).
IN_DIM, OUT_DIM, TEXT_DIM, IMAGE_DIM, FREQ_DIM = 36, 16, 4096, 1280, 256
PATCH, EPS = (1, 2, 2), 1e-6
LATENT_CHANNELS = 16  # x = [16 noisy latent ; 4 mask ; 16 first-frame latent]

# Top-level modules that `import diffsynth.pipelines.wan_video` (2.1.12) needs at import time only.
_IMPORT_ONLY = ("torchvision", "imageio", "PIL", "pandas", "transformers", "modelscope", "huggingface_hub",
                "tqdm", "accelerate", "ftfy", "regex")

_torchvision_declared = False


# ---------------------------------------------------------------------------------------------------
# import shims

class _StandInType(type):
    """Classes of a stand-in module: any attribute is another stand-in class; calling one raises."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in_class(name, cls.__module__)

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"{cls.__module__}.{cls.__name__} is a stand-in (the module is not installed): "
                           "benchmarks/diffsynth_peer.py supports only DiffSynth's VAP model call")


def _stand_in_class(name, module):
    return _StandInType(name, (), {"__module__": module})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stand_in_class(name, self.__name__)
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, tops):
        self.tops = frozenset(tops)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.tops:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _purge(top):
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _declare_torchvision_schemas():
    """Declare torchvision's op schemas with setup_env.sh's shim (tools/torchvision_cpu_shim.py)."""
    global _torchvision_declared
    import tools.torchvision_cpu_shim  # noqa: F401  (declares them on import)
    _torchvision_declared = True


def _try_import(top) -> str | None:
    """Import `top` for real; None if that worked, else why not (partial modules are removed)."""
    if top in sys.modules and not isinstance(sys.modules[top], _StandInModule):
        return None
    if importlib.util.find_spec(top) is None:
        return "not installed"
    try:
        importlib.import_module(top)
        return None
    except Exception as exc:  # a broken or CPU-incompatible install
        _purge(top)
        if top == "torchvision" and "torchvision::" in str(exc) and not _torchvision_declared:
            _declare_torchvision_schemas()
            return _try_import(top)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class _DiffSynth(types.SimpleNamespace):
    pass


_LOADED: _DiffSynth | None = None


def _load() -> _DiffSynth:
    """Import DiffSynth's Wan DiT, VAP expert and model function (shims applied as described above)."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    if importlib.util.find_spec("diffsynth") is None:
        raise ImportError(f"diffsynth is not installed; {INSTALL_HINT}")
    stand_ins = {}
    for top in _IMPORT_ONLY:
        why = _try_import(top)
        if why is not None:
            stand_ins[top] = why
    finder = _StandInFinder(stand_ins)
    sys.meta_path.insert(0, finder)
    try:
        from diffsynth.models.wan_video_dit import WanModel
        from diffsynth.models.wan_video_mot import MotWanModel
        from diffsynth.pipelines.wan_video import model_fn_wan_video
    except Exception:
        for name in [n for n in sys.modules if n == "diffsynth" or n.startswith("diffsynth.")]:
            del sys.modules[name]
        raise
    finally:
        sys.meta_path.remove(finder)
        for top in stand_ins:
            _purge(top)
    try:
        from importlib.metadata import version
        ver = version("diffsynth")
    except Exception:
        ver = "unknown"
    _LOADED = _DiffSynth(WanModel=WanModel, MotWanModel=MotWanModel, model_fn=model_fn_wan_video,
                         version=ver, stand_ins=stand_ins,
                         torchvision_schemas_declared=_torchvision_declared)
    return _LOADED


def available() -> tuple[bool, str]:
    """(True, what was loaded and shimmed) if DiffSynth's VAP model can be imported here, else
    (False, why, with the install hint)."""
    try:
        ds = _load()
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if INSTALL_HINT not in msg:
            msg += f"; install with: {INSTALL_HINT}"
        return False, msg
    notes = [f"diffsynth {ds.version}"]
    if ds.version != DIFFSYNTH_VERSION:
        notes.append(f"(tested with {DIFFSYNTH_VERSION})")
    if ds.stand_ins:
        notes.append("import-only stand-ins for: " + ", ".join(sorted(ds.stand_ins)))
    if ds.torchvision_schemas_declared:
        notes.append("torchvision op schemas declared (CUDA build with CPU torch)")
    return True, "; ".join(notes)


# ---------------------------------------------------------------------------------------------------
# the peer

def _randomize(modules, generator, dtype):
    """Weights ~ N(0, 1/fan_in), modulation tables ~ N(0, 1/dim), norm weights 1, biases 0."""
    for module in modules:
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            with torch.no_grad():
                if leaf == "bias":
                    p.zero_()
                elif leaf == "modulation":  # (1, 6, dim) or the head's (1, 2, dim)
                    p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[-1]))
                elif p.ndim == 1:  # LayerNorm / RMSNorm weights
                    p.fill_(1.0)
                else:  # Linear (out, in) and Conv3d (out, in, kt, kh, kw)
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
        module.to(dtype).eval().requires_grad_(False)


class DiffSynthVAPPeer:
    """A Wan 2.1 I2V DiT and DiffSynth's VAP expert with random weights, called through DiffSynth's
    pipeline model function. Attributes: dit (WanModel), vap (MotWanModel), dtype, expert_layers."""

    def __init__(self, ds: _DiffSynth, dit, vap, dtype, expert_layers):
        self._fn = ds.model_fn
        self.version = ds.version
        self.dit, self.vap, self.dtype = dit, vap, dtype
        self.expert_layers = tuple(expert_layers)

    def _target(self, x, t, context, clip_fea):
        if x.ndim != 5 or x.shape[1] != IN_DIM:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (B, {IN_DIM}, F, H, W)")
        d = self.dtype
        t = torch.as_tensor(t).reshape(-1).to(dtype=d, device=x.device)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        # the pipeline passes the 16 noisy channels as `latents` and the 20 image-condition channels as `y`
        return dict(latents=x[:, :LATENT_CHANNELS].to(d), y=x[:, LATENT_CHANNELS:].to(d), timestep=t,
                    context=context.to(d), clip_feature=clip_fea.to(d))

    @torch.no_grad()
    def __call__(self, x, t, context, clip_fea, ref_x, ref_context, ref_clip_fea) -> torch.Tensor:
        """Target prediction (B, 16, F, H, W); the reference stream's timestep is 1 (DiffSynth's own).
        As in DiffSynth's sampling loop, the reference is embedded again inside every call."""
        if ref_x.shape[2:] != x.shape[2:]:
            # DiffSynth builds the reference's RoPE table from the target's grid (its pipeline encodes the
            # reference video with the target's frame count and size), so other sizes cannot run.
            raise ValueError(f"DiffSynth's VAP needs ref_x's frames/height/width {tuple(ref_x.shape[2:])} equal "
                             f"to x's {tuple(x.shape[2:])}")
        d, b = self.dtype, x.shape[0]
        # reference tensors of batch 1 serve every row (DiffSynth's pipeline itself runs batch 1)
        ref_x, ref_context, ref_clip_fea = (r.expand(b, *r.shape[1:]) if r.shape[0] == 1 else r
                                            for r in (ref_x, ref_context, ref_clip_fea))
        return self._fn(dit=self.dit, vap=self.vap, **self._target(x, t, context, clip_fea),
                        vap_hidden_state=ref_x.to(d), vap_clip_feature=ref_clip_fea.to(d),
                        context_vap=ref_context.to(d))

    @torch.no_grad()
    def plain(self, x, t, context, clip_fea) -> torch.Tensor:
        """The same DiT without the expert (plain Wan 2.1 I2V), through the same model function."""
        return self._fn(dit=self.dit, **self._target(x, t, context, clip_fea))


def build(dim: int, num_heads: int, ffn_dim: int, num_layers: int, expert_layers: list[int],
          dtype=torch.float32, seed: int = 0) -> DiffSynthVAPPeer:
    """DiffSynth's Wan 2.1 I2V DiT (in 36, out 16, text 4096, CLIP 1280, freq 256, patch (1,2,2),
    eps 1e-6) and its VAP expert beside `expert_layers`, with random weights from `seed`."""
    layers = sorted(int(i) for i in expert_layers)
    if not layers or layers[0] < 0 or layers[-1] >= num_layers or len(set(layers)) != len(layers):
        raise ValueError(f"expert_layers {list(expert_layers)} must be distinct indices in 0..{num_layers - 1}")
    if dim % num_heads or (dim // num_heads) % 2:
        raise ValueError(f"dim {dim} must split into {num_heads} heads of even width")
    ds = _load()
    dit = ds.WanModel(dim=dim, in_dim=IN_DIM, ffn_dim=ffn_dim, out_dim=OUT_DIM, text_dim=TEXT_DIM,
                      freq_dim=FREQ_DIM, eps=EPS, patch_size=PATCH, num_heads=num_heads,
                      num_layers=num_layers, has_image_input=True)
    vap = ds.MotWanModel(mot_layers=tuple(layers), patch_size=PATCH, has_image_input=True, dim=dim,
                         num_heads=num_heads, ffn_dim=ffn_dim, freq_dim=FREQ_DIM, text_dim=TEXT_DIM,
                         in_dim=IN_DIM, eps=EPS)
    _randomize((dit, vap), torch.Generator().manual_seed(seed), dtype)
    return DiffSynthVAPPeer(ds, dit, vap, dtype, layers)


if __name__ == "__main__":  # smoke check and timing: python benchmarks/diffsynth_peer.py
    import time

    ok, why = available()
    print("available:", ok, "-", why)
    if not ok:
        sys.exit(1)
    b, f, h, w = 2, 2, 16, 16
    peer = build(dim=256, num_heads=2, ffn_dim=512, num_layers=2, expert_layers=[0])
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(b, IN_DIM, f, h, w, generator=g), torch.full((b,), 500.0),
            torch.randn(b, 512, TEXT_DIM, generator=g), torch.randn(b, 257, IMAGE_DIM, generator=g),
            torch.randn(b, IN_DIM, f, h, w, generator=g), torch.randn(b, 512, TEXT_DIM, generator=g),
            torch.randn(b, 257, IMAGE_DIM, generator=g))
    for name, call, a in (("vap", peer, args), ("plain", peer.plain, args[:4])):
        out = call(*a)
        n = 5
        start = time.perf_counter()
        for _ in range(n):
            out = call(*a)
        ms = (time.perf_counter() - start) / n * 1e3
        print(f"{name}: shape {tuple(out.shape)} finite {bool(torch.isfinite(out).all())} "
              f"std {out.float().std().item():.3f}  {ms:.1f} ms/call")
