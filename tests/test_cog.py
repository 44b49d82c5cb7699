"""VAP-CogVideoX-I2V-5B in vap_core against the golden outputs of the oracle (the paper's own code), and a
computation with two references written out here."""
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from devkit.checkpoints import ORACLE, Case, write_released
from vap_core import VAPTransformer
from vap_core.cog_keys import convert_released_name
from vap_core.cog_modules import CogExpert
from vap_core.config import WanConfig
from vap_core.errors import IncompatibleExpertError, InputError, NotACheckpointError
from vap_core.expert import VAPExpert, expert_source, load_expert
from vap_core.export import export_expert
from vap_core.released import read_released

TOL = 1e-4  # float32, max abs (the oracle's COGVIDEOX.md)
# every CogVideoX case in the fixtures (further cases dropped there are checked the same way)
COG_CASES = sorted(p.stem for p in ORACLE.glob("cog_*.safetensors"))


def max_err(a, b):
    return (a.float() - b.float()).abs().max().item()


def inputs(case, with_reference=True):
    x = {k: v.float() for k, v in case.group("in").items()}
    args = dict(x=x["x"], t=x["t"], context=x["context"])
    if with_reference:
        args.update(ref_x=x["ref_x"], ref_context=x["ref_context"])
    return args


def released(case, folder, shards=1, **config):
    return write_released(folder, case.released_weights(), case.checkpoint_config(**config), shards=shards)


@pytest.fixture(scope="module")
def cog_small():
    return Case("cog_small")


@pytest.fixture(scope="module")
def model(cog_small, tmp_path_factory):
    return VAPTransformer.from_checkpoint(released(cog_small, tmp_path_factory.mktemp("cog")))


@pytest.mark.parametrize("name", COG_CASES)
@pytest.mark.parametrize("shards", [1, 3])
def test_released_checkpoint_matches_the_oracle(name, shards, tmp_path):
    case = Case(name)
    model = VAPTransformer.from_checkpoint(released(case, tmp_path, shards))
    assert model.cfg.family == "cog" and model.expert.layers == tuple(case.config["block_idx_with_mot_ref"])
    with torch.no_grad():
        vap = model(**inputs(case))
        plain = model(**inputs(case, with_reference=False))
    print(f"\n{name}, {shards} shard(s): out.vap {max_err(vap, case.tensors['out.vap']):.2e}, "
          f"out.backbone {max_err(plain, case.tensors['out.backbone']):.2e}")
    assert max_err(vap, case.tensors["out.vap"]) <= TOL
    assert max_err(plain, case.tensors["out.backbone"]) <= TOL
    assert max_err(vap, plain) > 100 * TOL  # the expert really acts


def test_rope_delta_and_the_references_timestep(model, cog_small):
    inp = inputs(cog_small)
    f = inp["x"].shape[2]
    with torch.no_grad():
        default = model(**inp)
        assert max_err(model(**inp, rope_delta=0), cog_small.tensors["out.vap_delta0"]) <= TOL
        assert max_err(model(**inp, rope_delta=f), default) == 0.0
        # the reference's timestep is the target's (not Wan's constant 1)
        assert max_err(model(**inp, ref_t=inp["t"]), default) == 0.0
        assert max_err(model(**inp, ref_t=1.0), default) > 10 * TOL


def test_rope_table_is_the_pipelines(model, cog_small):
    """The complex RoPE table, as the pipeline's interleaved cos/sin tables (aux.rope*)."""
    f, h, w = cog_small.tensors["in.x"].shape[2:]
    grid = (f, h // 2, w // 2)
    for start, name in ((0, "rope"), (-f, "rope_ref")):
        table = model.backbone.caller().rope(grid, start, None)
        cos = table.real.repeat_interleave(2, dim=1)
        sin = table.imag.repeat_interleave(2, dim=1)
        assert max_err(cos, cog_small.tensors[f"aux.{name}.cos"]) < 1e-5
        assert max_err(sin, cog_small.tensors[f"aux.{name}.sin"]) < 1e-5


@pytest.mark.parametrize("name", COG_CASES)
def test_the_backbone_in_comfyuis_layout_and_the_expert_read_alone(name, tmp_path):
    """backbone_tensors() is the oracle's comfy_backbone.* exactly (names, and the table re-laid out to ComfyUI's
    shape); the expert's source names only _mot_ref tensors."""
    case = Case(name)
    rel = read_released(released(case, tmp_path))
    got, want = rel.backbone_tensors(), case.group("comfy_backbone")
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    names = expert_source(rel).names.values()
    assert names and all("_mot_ref" in n for n in names)


def test_bf16_is_close(cog_small, tmp_path):
    model = VAPTransformer.from_checkpoint(released(cog_small, tmp_path), dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(**inputs(cog_small)).float()
    ref, plain = cog_small.tensors["out.vap"], cog_small.tensors["out.backbone"]
    rms = lambda d: d.pow(2).mean().sqrt().item()  # noqa: E731
    assert rms(out - ref) <= 0.5 * rms(ref - plain)


# --- two references against a computation written out here ---------------------------------------------------

def sinusoid(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    return torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)


def rotate(x, f, h, w, t_start):
    """CogVideoX's 3-D RoPE on x (B, L, heads, 64): 16/24/24 channels, interleaved pairs."""
    d = x.shape[-1]
    pos = torch.stack(torch.meshgrid(torch.arange(f) + t_start, torch.arange(h), torch.arange(w), indexing="ij"),
                      -1).reshape(-1, 3).double()
    angles = torch.cat([pos[:, axis, None] / 10000.0 ** (torch.arange(0, n, 2).double() / n)
                        for axis, n in enumerate((d // 4, d // 8 * 3, d // 8 * 3))], dim=1)
    cos, sin = (a.float().repeat_interleave(2, dim=1)[None, :, None] for a in (angles.cos(), angles.sin()))
    turned = torch.stack([-x[..., 1::2], x[..., 0::2]], -1).flatten(-2)
    return x * cos + turned * sin


def hand_forward(model, x, t, context, refs, starts):
    """[text; video] per stream with its own table and time embedding; layers with an expert attend over every
    stream at once. refs: (ref_x, ref_context) per reference."""
    bb, ex, cfg = model.backbone, model.expert, model.cfg
    b, _, f, h, w = x.shape
    gh, gw = h // 2, w // 2

    def embed(m, lat, ctx):
        video = m.patch_embed.proj(lat.transpose(1, 2).flatten(0, 1)).flatten(2).transpose(1, 2).reshape(b, -1, cfg.dim)
        seq = torch.cat([m.patch_embed.text_proj(ctx), video], 1) + m.patch_embed.pos_embedding
        emb = m.time_embedding_linear_2(F.silu(m.time_embedding_linear_1(sinusoid(t, cfg.dim))))
        return dict(seq=seq, emb=emb, n_text=ctx.shape[1])

    streams = [dict(embed(bb, x, context), start=0, ref=False)]
    for (rx, rc), start in zip(refs, starts):
        streams.append(dict(embed(ex, rx.expand(b, -1, -1, -1, -1), rc), start=start, ref=True))
    ln = lambda norm, v: F.layer_norm(v, (v.shape[-1],), norm.weight, norm.bias, norm.eps)  # noqa: E731

    def modulated(norm, s):
        mod = norm.linear(F.silu(s["emb"]))[:, None].chunk(6, dim=2)
        n = s["n_text"]
        normed = ln(norm.norm, s["seq"])
        text = normed[:, :n] * (1 + mod[4]) + mod[3]
        video = normed[:, n:] * (1 + mod[1]) + mod[0]
        gates = torch.cat([mod[5].expand(-1, n, -1), mod[2].expand(-1, s["seq"].shape[1] - n, -1)], 1)
        return torch.cat([text, video], 1), gates

    for i, block in enumerate(bb.blocks):
        active = [s for s in streams if not s["ref"] or i in ex.layers]
        parts = []
        for s in active:
            blk = ex.blocks[str(i)] if s["ref"] else block
            hs, s["gate1"] = modulated(blk.norm1, s)
            n, length = s["n_text"], hs.shape[1]
            q, k = (ln(norm, proj(hs).view(b, length, cfg.num_heads, -1)) for proj, norm in
                    ((blk.q, blk.norm_q), (blk.k, blk.norm_k)))
            q, k = (torch.cat([v[:, :n], rotate(v[:, n:], f, gh, gw, s["start"])], 1) for v in (q, k))
            parts.append((q, k, blk.v(hs).view(b, length, cfg.num_heads, -1)))
        keys, values = torch.cat([p[1] for p in parts], 1), torch.cat([p[2] for p in parts], 1)
        for s, (q, _, _) in zip(active, parts):
            blk = ex.blocks[str(i)] if s["ref"] else block
            weights = torch.einsum("bqhd,bkhd->bhqk", q, keys).div(8.0).softmax(-1)
            y = torch.einsum("bhqk,bkhd->bqhd", weights, values).flatten(2)
            s["seq"] = s["seq"] + s["gate1"] * blk.attn_out(y)
            hs, gate2 = modulated(blk.norm2, s)
            s["seq"] = s["seq"] + gate2 * blk.ff_out(F.gelu(blk.ff_proj(hs), approximate="tanh"))
    target = streams[0]
    video = ln(bb.norm_final, target["seq"][:, target["n_text"]:])
    shift, scale = bb.norm_out.linear(F.silu(target["emb"]))[:, None].chunk(2, dim=2)
    out = bb.proj_out(ln(bb.norm_out.norm, video) * (1 + scale) + shift)
    return out.reshape(b, f, gh, gw, -1, 2, 2).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, -1, f, h, w)


def second_reference(case, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(case.tensors["in.ref_x"][:1].shape, generator=g),
            torch.randn(case.tensors["in.ref_context"].shape, generator=g))


def test_the_hand_computation_is_the_oracle_with_one_reference(model, cog_small):
    inp = inputs(cog_small)
    with torch.no_grad():
        out = hand_forward(model, inp["x"], inp["t"], inp["context"], [(inp["ref_x"][:1], inp["ref_context"])],
                           [-inp["x"].shape[2]])
    assert max_err(out, cog_small.tensors["out.vap"]) <= TOL


@pytest.mark.parametrize("placement", ["sequential", "shared"])
def test_two_references_match_the_hand_computation(model, cog_small, placement):
    inp = inputs(cog_small)
    first, second = (inp["ref_x"][:1], inp["ref_context"]), second_reference(cog_small, 3)
    f = inp["x"].shape[2]
    starts = {"sequential": [-2 * f, -f], "shared": [-f, -f]}[placement]
    with torch.no_grad():
        out = model(inp["x"], inp["t"], inp["context"], ref_x=[first[0], second[0]],
                    ref_context=[first[1], second[1]], placement=placement)
        hand = hand_forward(model, inp["x"], inp["t"], inp["context"], [first, second], starts)
        one = model(**inp)
    assert max_err(out, hand) <= TOL
    assert max_err(out, one) > 100 * TOL  # the second reference really takes part


# --- errors ------------------------------------------------------------------------------------------------------

def test_a_cog_expert_and_a_wan_backbone_do_not_pair(model):
    wan = WanConfig(dim=192, num_heads=3, ffn_dim=768, num_layers=4)
    with pytest.raises(IncompatibleExpertError, match="CogVideoX-I2V-5B expert but the backbone is Wan 2.1"):
        model.expert.check_fits(wan)
    with pytest.raises(IncompatibleExpertError, match="Wan 2.1 expert but the backbone is CogVideoX"):
        VAPExpert(wan, [0], device="meta").check_fits(model.cfg)


@pytest.mark.parametrize("setting, message", [
    ({"patch_size_t": 2}, "a temporal patch \\(CogVideoX 1.5\\)"),
    ({"ofs_embed_dim": 512}, "an ofs embedding"),
    ({"use_learned_positional_embeddings": False}, "no learned position table"),
    ({"_class_name": "HunyuanVideoTransformer3DModel"}, "neither a Wan nor a CogVideoX transformer"),
])
def test_a_config_of_another_kind_is_refused(cog_small, tmp_path, setting, message):
    with pytest.raises(NotACheckpointError, match=message):
        read_released(released(cog_small, tmp_path, **setting))


def test_a_reference_of_another_length_or_text_of_another_length_is_refused(model, cog_small):
    inp = inputs(cog_small)
    short = {**inp, "ref_x": inp["ref_x"][:, :, :2]}
    with pytest.raises(InputError, match="ref_x has 2 latent frames but the video has 3: .*resample"):
        model(**short)
    with pytest.raises(InputError, match="x's text has 5 tokens; CogVideoX takes exactly 7"):
        model(**{**inp, "context": inp["context"][:, :5]})
    with pytest.raises(InputError, match="ref_x's text has 8 tokens"):
        model(**{**inp, "ref_context": torch.cat([inp["ref_context"], inp["ref_context"][:, :1]], 1)})
    with pytest.raises(InputError, match="learned position table fits only 3 latent frames of 10x6"):
        model(**{**inp, "x": inp["x"][..., :4]})


def test_a_one_row_reference_serves_every_row_and_another_batch_is_refused(model, cog_small):
    inp = {k: v[:1] for k, v in inputs(cog_small).items()}
    one = model(**inp)
    two = {**inp, **{k: torch.cat([inp[k]] * 2) for k in ("x", "t", "context", "ref_context")}}
    assert torch.allclose(model(**two), torch.cat([one] * 2), atol=1e-6)
    three = {**two, "ref_x": torch.cat([inp["ref_x"]] * 3)}
    with pytest.raises(InputError, match="ref_x has batch 3; expected 1 or 2"):
        model(**three)


# --- export ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp8_e4m3fn"])
def test_export_and_load_the_expert(cog_small, tmp_path, dtype):
    out = tmp_path / f"cog_expert_{dtype}.safetensors"
    meta = export_expert(released(cog_small, tmp_path / "r"), out, dtype)
    assert meta["family"] == "cog"
    expert, loaded_meta = load_expert(out)
    assert isinstance(expert, CogExpert) and expert.layers == (0, 2) and loaded_meta["dtype"] == dtype
    want = {convert_released_name(k)[1]: v for k, v in cog_small.released_weights().items() if "_mot_ref" in k}
    state = expert.state_dict()
    assert set(state) == set(want)
    with safe_open(str(out), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    for name, t in stored.items():
        if dtype == "bf16":
            assert torch.equal(t, want[name])
        matrix = name.endswith(".weight") and t.ndim == 2
        assert t.dtype == ({"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float8_e4m3fn)
                           if matrix or dtype != "fp8_e4m3fn" else torch.bfloat16), name
