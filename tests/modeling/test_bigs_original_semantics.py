"""BiGS against the original's equations, written again here (no bizoo code in the reference): one layer of
jxiw/BiGS (pre-norm; v, u_f, u_b gated by GELU; the backward branch as flip -> causal S4D -> flip; the product of
duc_forward and duc_backward; dol, GELU, the gate, do; the residual), the S4D zero-order-hold kernel with B = 1 and
no factor 2 (K[l] = Re Σ_n C_n (e^{ΔA_n} - 1)/A_n e^{lΔA_n}), and the documentation of the configuration."""

from __future__ import annotations

import math
import re

import torch

import bizoo
from bizoo.modeling.modeling_bigs import BiGSLayer, BiGSPreTrainedModel
from tests.bigs_original import causal_conv, s4d_kernel
from tests.bigs_original import gelu as original_gelu


def _kernel(ssm, length: int) -> torch.Tensor:
    """(length,) float64: the original's S4D kernel of ``ssm``'s parameters (``tests/bigs_original.py``)."""
    return s4d_kernel(*(p.detach().double() for p in (ssm.A_re, ssm.A_im, ssm.C, ssm.log_step)), length)


def _causal(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """u (L, H): y[t] = Σ_{s≤t} K[t-s] u[s] + D u[t] (``tests/bigs_original.py``)."""
    return causal_conv(u[None], K, D.detach().double())[0]


def _original_layer(layer: BiGSLayer, x: torch.Tensor) -> torch.Tensor:
    """One original BiGS layer over one unpadded sequence x (L, d), float64, exact GELU."""
    p = {k: v.double() for k, v in layer.state_dict().items()}
    gelu = lambda t: original_gelu(t, approximate=False)  # noqa: E731  (exact, as the PyTorch port)
    dense = lambda name, t: t @ p[f"{name}.weight"].T + p[f"{name}.bias"]  # noqa: E731
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    h = (x - mean) / torch.sqrt(var + layer.LayerNorm.eps) * p["LayerNorm.weight"] + p["LayerNorm.bias"]
    L = x.shape[0]
    v = gelu(dense("dv", h))
    yf = _causal(gelu(dense("du_forward", h)), _kernel(layer.fs4, L), layer.fs4.D)
    yb = _causal(gelu(dense("du_backward", h.flip(0))), _kernel(layer.bs4, L), layer.bs4.D)
    mixed = dense("duc_forward", yf) * dense("duc_backward", yb).flip(0)
    return x + dense("do", gelu(dense("dol", mixed)) * v)


def test_masked_layer_is_the_original_layer_on_each_unpadded_sequence():
    """pad_mode="masked": at the real tokens of a right- or left-padded batch, a layer computes what the original
    layer computes on the sequence alone; its backward SSM starts at the sequence's last real token."""
    torch.manual_seed(0)
    config = bizoo.BiGSConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, intermediate_size=24, num_ssm=4,
                              max_position_embeddings=16, gate_act="gelu", hidden_dropout_prob=0.0)
    layer = bizoo.BiGSModel(config).layers[0].double().eval()
    with torch.no_grad():  # O(1) branches (not N(0, 0.02) weights, whose residual update is ~1e-10)
        for dense in (layer.dv, layer.du_forward, layer.du_backward, layer.duc_forward, layer.duc_backward,
                      layer.dol, layer.do):
            dense.weight.normal_(0, 1 / math.sqrt(dense.in_features))
            dense.bias.normal_(0, 0.1)
    with torch.no_grad():  # a non-trivial skip, a clamped mode and a long memory (small Δ): padding would show
        layer.fs4.D.fill_(0.7)
        layer.bs4.A_re[0] = 0.5
        layer.fs4.log_step.fill_(math.log(0.05))
        layer.bs4.log_step.fill_(math.log(0.05))
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 6:] = 0  # right padding: 6 real tokens
    mask[1, :4] = 0  # left padding: 5 real tokens
    for form in ("toeplitz", "fft", "recurrent"):
        config.bigs_form = form
        with torch.no_grad():
            out = layer(x, mask)
        torch.testing.assert_close(out[0, :6], _original_layer(layer, x[0, :6]), atol=1e-10, rtol=0)
        torch.testing.assert_close(out[1, 4:], _original_layer(layer, x[1, 4:]), atol=1e-10, rtol=0)
    assert (out - x).abs().max() > 0.1  # the layer's update is large enough for the check to mean something


def test_config_docstring_names_the_parameter_groups_method_the_model_has():
    """The configuration's documentation of ssm_lr_multiplier / ssm_weight_decay points at a method that exists."""
    doc = bizoo.BiGSConfig.__doc__
    section = doc[doc.index("ssm_lr_multiplier"):doc.index("freeze_ssm (")]
    names = re.findall(r"`(\w*parameter_groups)\b", section)
    assert names, section
    for name in names:
        assert callable(getattr(BiGSPreTrainedModel, name, None)), f"BiGSConfig's docstring names {name!r}"
