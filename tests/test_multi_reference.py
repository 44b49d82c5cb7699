"""Several references through vap_core's one pass, against a computation written out here: every
stream's q/k/v by hand, RoPE from explicit positions, one softmax over the keys of all streams."""
import pytest
import torch
import torch.nn.functional as F

from vap_core.embedding import embed_stream
from vap_core.errors import InputError
from vap_core.expert_pass import ExpertPass, reference_starts
from vap_core.host import TORCH_HOST, sdpa_attention
from vap_core.wan_layer import BLOCK_ATTRIBUTES, Stream, i2v_cross_attention, missing_block_attributes

TOL = 1e-4


def second_reference(case, frames: int, seed: int):
    """Another reference for case's target: its own length, caption and CLIP tokens."""
    g = torch.Generator().manual_seed(seed)
    ref_x = case.tensors["in.ref_x"].float()
    x = torch.randn(1, ref_x.shape[1], frames, *ref_x.shape[3:], generator=g)
    context = torch.randn(case.tensors["in.ref_context"].shape, generator=g)
    clip = torch.randn(case.tensors["in.ref_clip_fea"].shape, generator=g)
    return x, context, clip


def positions(grid, t_start):
    f, h, w = grid
    axes = torch.meshgrid(torch.arange(f) + t_start, torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack(axes, -1).reshape(-1, 3)


def rotate(x, pos):
    """Wan's 3D RoPE on x (B, L, heads, head_dim): channel pairs split frame/height/width."""
    head_dim = x.shape[-1]
    hw = 2 * (head_dim // 6)
    angles = torch.cat([pos[:, axis, None].double() / 10000.0 ** (torch.arange(0, d, 2).double() / d)
                        for axis, d in enumerate((head_dim - 2 * hw, hw, hw))], dim=1)
    cos, sin = angles.cos().float()[None, :, None], angles.sin().float()[None, :, None]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


def hand_forward(model, x, t, context, clip_fea, refs, starts):
    """The VAP model written out; refs: (ref_x, ref_context, ref_clip_fea) per reference."""
    bb, ex, cfg = model.backbone, model.expert, model.cfg
    pad = lambda c: F.pad(c, (0, 0, 0, cfg.text_len - c.shape[1]))  # noqa: E731
    b = x.shape[0]
    grid = (x.shape[2], x.shape[3] // 2, x.shape[4] // 2)
    tokens, temb, e, ctx = embed_stream(bb, x, t.expand(b), pad(context), clip_fea, torch.float32)
    streams = [dict(tokens=tokens, e=e, ctx=ctx, pos=positions(grid, 0), ref=False)]
    for (rx, rc, rclip), start in zip(refs, starts):
        rtokens, _, re, rctx = embed_stream(ex, rx.expand(b, -1, -1, -1, -1), torch.ones(b), pad(rc), rclip.expand(b, -1, -1),
                                            torch.float32)
        streams.append(dict(tokens=rtokens, e=re, ctx=rctx, pos=positions((rx.shape[2], *grid[1:]), start), ref=True))
    heads = cfg.num_heads
    for i, block in enumerate(bb.blocks):
        active = [s for s in streams if not s["ref"] or i in ex.layers]
        parts = []
        for s in active:
            blk = ex.blocks[str(i)] if s["ref"] else block
            s["mod"] = (blk.modulation + s["e"]).chunk(6, dim=1)
            h = F.layer_norm(s["tokens"], (cfg.dim,), eps=cfg.eps) * (1 + s["mod"][1]) + s["mod"][0]
            sa, n = blk.self_attn, h.shape[1]
            q = rotate(sa.norm_q(sa.q(h)).view(b, n, heads, -1), s["pos"])
            k = rotate(sa.norm_k(sa.k(h)).view(b, n, heads, -1), s["pos"])
            parts.append((q, k, sa.v(h).view(b, n, heads, -1)))
        keys, values = torch.cat([k for _, k, _ in parts], 1), torch.cat([v for _, _, v in parts], 1)
        for s, (q, _, _) in zip(active, parts):
            blk = ex.blocks[str(i)] if s["ref"] else block
            weights = torch.einsum("bqhd,bkhd->bhqk", q, keys).div(q.shape[-1] ** 0.5).softmax(-1)
            y = torch.einsum("bhqk,bkhd->bqhd", weights, values).flatten(2)
            xs, mod = s["tokens"], s["mod"]
            xs = xs + blk.self_attn.o(y) * mod[2]
            xs = xs + i2v_cross_attention(blk.cross_attn, blk.norm3(xs), s["ctx"], clip_fea.shape[1], sdpa_attention, heads)
            s["tokens"] = xs + blk.ffn(F.layer_norm(xs, (cfg.dim,), eps=cfg.eps) * (1 + mod[4]) + mod[3]) * mod[5]
    return bb.output(Stream(streams[0]["tokens"], None, None, None, 0), temb, grid, TORCH_HOST)


def test_the_hand_computation_is_the_paper_model_with_one_reference(model, case_small):
    inp = case_small.inputs()
    refs = [(inp["ref_x"][:1], inp["ref_context"], inp["ref_clip_fea"][:1])]
    with torch.no_grad():
        out = hand_forward(model, inp["x"], inp["t"], inp["context"], inp["clip_fea"], refs, [-inp["ref_x"].shape[2]])
    assert (out - case_small.tensors["out.vap"]).abs().max() <= TOL


@pytest.mark.parametrize("placement", ["sequential", "shared"])
def test_one_reference_in_a_list_is_the_single_reference_call(model, case_small, placement):
    inp = case_small.inputs()
    listed = {**inp, **{k: [inp[k]] for k in ("ref_x", "ref_context", "ref_clip_fea")}}
    with torch.no_grad():
        assert torch.equal(model(**listed, placement=placement), model(**inp))


@pytest.mark.parametrize("placement", ["sequential", "shared"])
def test_two_references_match_the_hand_computation(model, case_small, placement):
    inp = case_small.inputs()
    first = (inp["ref_x"][:1], inp["ref_context"], inp["ref_clip_fea"][:1])
    second = second_reference(case_small, frames=5, seed=1)  # longer than the first and than the target
    starts = {"sequential": [-3 - 5, -5], "shared": [-3, -5]}[placement]
    assert reference_starts([3, 5], placement) == starts
    with torch.no_grad():
        out = model(inp["x"], inp["t"], inp["context"], inp["clip_fea"], ref_x=[first[0], second[0]],
                    ref_context=[first[1], second[1]], ref_clip_fea=[first[2], second[2]], placement=placement)
        hand = hand_forward(model, inp["x"], inp["t"], inp["context"], inp["clip_fea"], [first, second], starts)
        one = model(**inp)
    assert (out - hand).abs().max() <= TOL
    assert (out - one).abs().max() > 100 * TOL  # the second reference really takes part


def test_order_matters_when_sequential_and_not_when_shared(model, case_small):
    inp = case_small.inputs()
    a = (inp["ref_x"][:1], inp["ref_context"], inp["ref_clip_fea"][:1])
    b = second_reference(case_small, frames=3, seed=2)  # the same length as a

    def run(refs, placement):
        return model(inp["x"], inp["t"], inp["context"], inp["clip_fea"], ref_x=[r[0] for r in refs],
                     ref_context=[r[1] for r in refs], ref_clip_fea=[r[2] for r in refs], placement=placement)
    with torch.no_grad():
        assert (run([a, b], "shared") - run([b, a], "shared")).abs().max() <= 1e-5
        assert (run([a, b], "sequential") - run([b, a], "sequential")).abs().max() > 100 * TOL


def test_placements_and_rope_delta():
    assert reference_starts([4], "sequential") == reference_starts([4], "shared") == [-4]
    assert reference_starts([2, 3, 4], "sequential") == [-9, -7, -4]
    assert reference_starts([2, 3, 4], "sequential", rope_delta=1) == [-6, -4, -1]
    assert reference_starts([2, 3, 4], "shared", rope_delta=1) == [-1, -1, -1]
    with pytest.raises(InputError, match="placement 'stacked' is not one of sequential, shared"):
        reference_starts([2], "stacked")


def test_the_pass_refuses_layers_out_of_order(model, case_small):
    inp = case_small.inputs()
    reference = model.embed_reference(inp["ref_x"], inp["ref_context"], inp["ref_clip_fea"], batch=2)
    rope = lambda grid, start: None  # noqa: E731  (not reached)
    vap_pass = ExpertPass(expert=model.expert, references=[reference], target_grid=(3, 3, 5), batch=2, timestep=inp["t"],
                          rope_freqs=rope, host=TORCH_HOST)
    with pytest.raises(InputError, match="VAP expert layer 2 ran when layer 0 was due"):
        vap_pass.layer(2, model.backbone.blocks[2], Stream(None, None, None, None, 0))
    with pytest.raises(InputError, match=r"layers \[0, 2, 5\] never ran"):
        vap_pass.finish()
    vap_pass._next = len(model.expert.layers)  # as after a whole model call
    with pytest.raises(InputError, match="VAP expert layer 5 ran when every expert layer had run"):
        vap_pass.layer(5, model.backbone.blocks[5], Stream(None, None, None, None, 0))


def test_block_attributes():
    from vap_core.config import WanConfig
    from vap_core.layers import WanBlock
    block = WanBlock(WanConfig(dim=12, num_heads=2, ffn_dim=8, num_layers=1), device="meta")
    assert missing_block_attributes(block) == []
    del block.norm3, block.cross_attn.k_img
    assert missing_block_attributes(block) == ["norm3", "cross_attn.k_img"]
    assert len(BLOCK_ATTRIBUTES) == len(set(BLOCK_ATTRIBUTES))
