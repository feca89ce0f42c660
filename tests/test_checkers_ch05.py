"""Chapter 5's checkers: the right solution passes, plausible wrong ones fail."""
import pytest
import torch

from nanoseek.exercises import ch05


# ---- exercise 1: KV cache elements per token
def kv_right(kind, L, H, D, G, c, r):
    return {"mha": 2 * H * D * L, "gqa": 2 * G * D * L, "mqa": 2 * D * L, "mla": (c + r) * L}[kind]


def kv_no_rope(kind, L, H, D, G, c, r):  # forgets the decoupled RoPE key
    return c * L if kind == "mla" else kv_right(kind, L, H, D, G, c, r)


def kv_no_two(kind, L, H, D, G, c, r):  # forgets that K and V are both cached
    return kv_right(kind, L, H, D, G, c, r) // (1 if kind == "mla" else 2)


def kv_float(kind, L, H, D, G, c, r):
    return float(kv_right(kind, L, H, D, G, c, r))


# ---- exercise 2: absorbed scores
def scores_right(q, w, ckv):
    return torch.einsum("bhc,bsc->bhs", torch.einsum("bhn,hnc->bhc", q, w), ckv)


def scores_decompressed(q, w, ckv):  # right numbers, the forbidden way
    k_nope = torch.einsum("hnc,bsc->bhsn", w, ckv)
    return torch.einsum("bhn,bhsn->bhs", q, k_nope)


def scores_decompressed_broadcast(q, w, ckv):
    k_nope = (w[None, :, None] * ckv[:, None, :, None, :]).sum(-1)  # (B, H, S, n)
    return (q[:, :, None] * k_nope).sum(-1)


def scores_transposed_w(q, w, ckv):
    return torch.einsum("bhc,bsc->bhs", torch.einsum("bhn,hcn->bhc", q, w.transpose(1, 2).flip(-1)), ckv)


# ---- exercise 3: RoPE as a matrix
def _rope(pos, dim, sign=1.0, interleaved=False):
    half = dim // 2
    angle = pos * 10000.0 ** (-torch.arange(0, dim, 2).float() / dim)
    R = torch.zeros(dim, dim)
    i = torch.arange(half)
    a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + half)
    R[a, a], R[a, b] = angle.cos(), -sign * angle.sin()
    R[b, a], R[b, b] = sign * angle.sin(), angle.cos()
    return R


def rope_right(pos, dim):
    return _rope(pos, dim)


def rope_transposed(pos, dim):  # rotates the wrong way
    return _rope(pos, dim, sign=-1.0)


def rope_interleaved(pos, dim):  # the other layout
    return _rope(pos, dim, interleaved=True)


# ---- exercise 4: flash-decoding combine
def combine_right(o, lse):
    w = torch.exp(lse - lse.max(dim=0).values)
    return (w[..., None] * o).sum(0) / w.sum(0)[..., None]


def combine_unstable(o, lse):  # exp(lse) overflows for large scores
    w = torch.exp(lse)
    return (w[..., None] * o).sum(0) / w.sum(0)[..., None]


def combine_mean(o, lse):  # ignores the chunks' masses
    return o.mean(0)


def combine_softmax_wrong_dim(o, lse):
    return (lse.softmax(-1)[..., None] * o).sum(0)


# ---- exercise 5 (core): the absorbed decode step
def decode_right(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)  # (B, H, c)
    scores = torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)
    o_lat = torch.einsum("bhs,bsc->bhc", (scores * scale).softmax(-1), c_kv)
    return torch.einsum("bhc,hvc->bhv", o_lat, w_uv)


def decode_decompressed(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    k = torch.einsum("hnc,bsc->bhsn", w_uk, c_kv)
    v = torch.einsum("hvc,bsc->bhsv", w_uv, c_kv)
    scores = torch.einsum("bhn,bhsn->bhs", q_nope, k) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)
    return torch.einsum("bhs,bhsv->bhv", (scores * scale).softmax(-1), v)


def decode_no_rope(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    return decode_right(q_nope, torch.zeros_like(q_pe), c_kv, k_pe, w_uk, w_uv, scale)


def decode_no_scale(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    return decode_right(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, 1.0)


def decode_softmax_over_heads(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)
    scores = torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)
    o_lat = torch.einsum("bhs,bsc->bhc", (scores * scale).softmax(1), c_kv)
    return torch.einsum("bhc,hvc->bhv", o_lat, w_uv)


def decode_unstable(q_nope, q_pe, c_kv, k_pe, w_uk, w_uv, scale):
    q_lat = torch.einsum("bhn,hnc->bhc", q_nope, w_uk)
    scores = (torch.einsum("bhc,bsc->bhs", q_lat, c_kv) + torch.einsum("bhr,bsr->bhs", q_pe, k_pe)) * scale
    e = scores.to(torch.float16).exp().float()  # a half-precision exp: overflows above ~11
    o_lat = torch.einsum("bhs,bsc->bhc", e / e.sum(-1, keepdim=True), c_kv)
    return torch.einsum("bhc,hvc->bhv", o_lat, w_uv)


CASES = [
    (ch05.check_kv_cache_elements, kv_right, [kv_no_rope, kv_no_two, kv_float]),
    (ch05.check_absorbed_scores, scores_right, [scores_decompressed, scores_decompressed_broadcast, scores_transposed_w]),
    (ch05.check_rope_matrix, rope_right, [rope_transposed, rope_interleaved]),
    (ch05.check_combine_splits, combine_right, [combine_unstable, combine_mean, combine_softmax_wrong_dim]),
    (ch05.check_absorbed_decode, decode_right,
     [decode_decompressed, decode_no_rope, decode_no_scale, decode_softmax_over_heads, decode_unstable]),
]


@pytest.mark.parametrize("checker,right", [(c, r) for c, r, _ in CASES], ids=[c.__name__ for c, _, _ in CASES])
def test_right_solution_passes(checker, right):
    assert checker(right)


@pytest.mark.parametrize("checker,wrong", [(c, w) for c, _, ws in CASES for w in ws],
                         ids=[w.__name__ for _, _, ws in CASES for w in ws])
def test_wrong_solution_fails(checker, wrong):
    assert not checker(wrong)
