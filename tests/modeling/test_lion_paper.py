"""LION against the paper's equations (Afzal et al. 2025), written out independently and by brute force, O(L²) per
head in fp64; and the config fields that fix a LION model's structure once it is built.

The paper's mask (its Eq. for M, and the authors' mask code): M_ij = ∏_{m=j}^{i-1} λ_m (i > j), 1 (i = j),
∏_{m=i+1}^{j} λ_m (i < j); y_i = Σ_j M_ij (q_i·k_j) v_j / Σ_j M_ij (q_i·k_j) with q = φ(W_q x), k = φ(W_k x);
LION-D λ_h = σ(a_h), LION-S λ_{t,h} = σ(-(w_h·x_t + b_h)) (the authors' log(1 - σ(w·x + b))).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from bizoo import LionConfig, LionModel
from bizoo.modeling.modeling_lion import LionAttention
from tests.modeling.test_lion import tiny



def paper_span(i: int, j: int, shift: int) -> range:
    """The positions t whose decays λ_t the paper's mask M_ij multiplies: j+shift .. i-1+shift below the diagonal
    (i > j), i+1-shift .. j-shift above it (i < j), none on it."""
    if i > j:
        return range(j + shift, i + shift)
    if i < j:
        return range(i + 1 - shift, j + 1 - shift)
    return range(0)

def phi(x, kind):
    """The feature maps as the paper states them: elu(x) + 1, and (silu(x) + 0.5) / ||silu(x) + 0.5||."""
    if kind == "elu1":
        return F.elu(x) + 1
    if kind == "silu_norm":
        r = F.silu(x) + 0.5
        return r / r.norm(dim=-1, keepdim=True)
    return x


def linear64(m, t):
    """The linear layer ``m`` on ``t`` in fp64."""
    return F.linear(t, m.weight.double(), None if m.bias is None else m.bias.double())


def paper_projections(att, x, config):
    """q = φ(W_q x), k = φ(W_k x), v = W_v x, each (B, L, H, Dh), and the decays λ (B, L, H) as the paper states
    them (LION-LIT: 1, LION-D: σ(a_h), LION-S: σ(-(w_h·x_t + b_h))), in fp64 from the fp64 ``x``."""
    B, L, d = x.shape
    H = config.num_attention_heads
    Dh = d // H
    q = phi(linear64(att.q_proj, x).view(B, L, H, Dh), config.feature_map)
    k = phi(linear64(att.k_proj, x).view(B, L, H, Dh), config.feature_map)
    v = linear64(att.v_proj, x).view(B, L, H, Dh)
    if config.lion_variant == "lit":
        lam = torch.ones(B, L, H, dtype=torch.float64)
    elif config.lion_variant == "d":
        lam = torch.sigmoid(att.decay.logits.double()).expand(B, L, H)
    else:
        lam = torch.sigmoid(-(x @ att.decay.weight.double().T + att.decay.bias.double()))  # (B, L, H)
    return q, k, v, lam


def paper_mixer(att, x, config, keep, shift=0):
    """One LION mixer by the paper's equations, fp64, each sequence with its padding removed. ``shift=1`` uses the
    other index convention, λ_{j+1..i} forward and λ_{i..j-1} backward (what a recurrence S_i = λ_i S_{i-1} + k_i v_iᵀ
    gives), only to show that the comparison tells the two apart."""
    B, L, d = x.shape
    H = config.num_attention_heads
    Dh = d // H
    x = x.double()
    att = att.requires_grad_(False)
    q, k, v, lam = paper_projections(att, x, config)
    y = torch.zeros(B, L, H, Dh, dtype=torch.float64)
    for b in range(B):
        idx = [t for t in range(L) if keep[b, t]]  # the sequence without its padding
        n = len(idx)
        for h in range(H):
            lam_bh = [float(lam[b, t, h]) for t in idx]
            for i in range(n):
                num = torch.zeros(Dh, dtype=torch.float64)
                den = torch.zeros((), dtype=torch.float64)
                for j in range(n):
                    span = paper_span(i, j, shift)
                    m = math.prod(lam_bh[t] for t in span)
                    s = m * (q[b, idx[i], h] @ k[b, idx[j], h])
                    if config.normalization == "none":
                        s = s / math.sqrt(Dh)
                    num, den = num + s * v[b, idx[j], h], den + s
                y[b, idx[i], h] = num / den if config.normalization == "rowsum" else num
    y = y.reshape(B, L, d)
    if config.normalization == "none":
        norm = att.mixer_norm
        y = F.layer_norm(y, (d,), norm.weight.double(), norm.bias.double(), norm.eps)
    return linear64(att.o_proj, y)  # (B, L, d)


@pytest.mark.parametrize("form", ["attention", "rnn", "chunk"])
@pytest.mark.parametrize("normalization", ["rowsum", "none"])
@pytest.mark.parametrize("variant", ["lit", "d", "s"])
def test_mixer_is_the_papers_equations(variant, normalization, form):
    """Widened weights (N(0, 0.7) everywhere, decays included), so that tokens pass a lot to each other and the
    decays are far from 1; left and right padding in the second row."""
    extra = {"feature_map": "identity"} if normalization == "none" else {}
    config = LionConfig(
        hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32, lion_variant=variant,
        lion_form=form, chunk_size=4, normalization=normalization, **extra,
    )
    torch.manual_seed(0)
    att = LionAttention(config)
    with torch.no_grad():
        for p in att.parameters():
            p.normal_(0.0, 0.7)
    x = torch.randn(2, 9, 16)
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, :2] = 0
    keep[1, 7:] = 0
    real = keep.bool()[..., None]
    got = att(x, keep).double()
    expected = paper_mixer(att, x, config, keep)
    torch.testing.assert_close(torch.where(real, got, 0.0), torch.where(real, expected, 0.0), rtol=1e-4, atol=1e-4)
    # Not vacuous: the tokens do mix (the output is not that of each token alone), and for LION-S the comparison
    # tells the paper's λ indices from the shifted ones.
    alone = torch.stack([att(x[:, t : t + 1], keep[:, t : t + 1])[:, 0] for t in range(9)], 1).double()
    assert (torch.where(real, got - alone, 0.0)).abs().max() > 0.1
    if variant == "s":
        shifted = paper_mixer(att, x, config, keep, shift=1)
        assert (torch.where(real, shifted - expected, 0.0)).abs().max() > 1e-2


CHANGES = {
    "lion_variant": "s",
    "feature_map": "elu1",
    "normalization": "none",
    "position_embedding_type": "absolute",
    "layer_norm_position": "post",
    "qkv_bias": False,
    "hidden_act": "relu",
}


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_a_structural_field_after_building_is_an_error(field):
    """A rowsum model whose config says normalization='none' ran unnormalised with no LayerNorm (neither model); a
    changed feature_map ran the trained weights through another φ; a changed variant or position type ran as built
    while the config (and a checkpoint saved from it) said otherwise. Now: a ValueError naming the field."""
    model = LionModel(tiny(lion_variant="d", feature_map="silu_norm")).eval()
    x = torch.randint(5, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    before, built = model(input_ids=x).last_hidden_state, getattr(model.config, field)
    setattr(model.config, field, CHANGES[field])
    with pytest.raises(ValueError, match=rf"config\.{field} is .* built with {field}="):
        model(input_ids=x)
    model.config.lion_form = "rnn"  # what may change: how the same function is computed
    setattr(model.config, field, built)
    torch.testing.assert_close(model(input_ids=x).last_hidden_state, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", [["d"], {"variant": "d"}])
def test_an_unhashable_variant_is_a_clear_error(variant):
    with pytest.raises(ValueError, match="lion_variant must be one of"):
        LionConfig(lion_variant=variant)


def test_the_structural_fields_are_those_listed():
    from bizoo.modeling.modeling_lion import STRUCTURAL_FIELDS

    assert sorted(STRUCTURAL_FIELDS) == sorted(CHANGES)
