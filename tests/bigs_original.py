r"""The forward pass of the ORIGINAL BiGS code (jxiw/BiGS: the Flax models and the authors' PyTorch port), written
again from its equations for the tests of ``bizoo convert-bigs``. Plain torch in float64, over the original
checkpoints' own tensor names and layouts (Flax: "s4_bert/encoder/layer/0/dv/kernel" with (in, out) kernels and
LayerNorm "scale"; port: "bigs.encoder.layer.0.dv.weight" with (out, in) weights). It imports nothing from bizoo.

One layer, x (L, d) the padded sequence, flip = reversal of the WHOLE padded time axis (as jnp.flip/torch.flip):

    h  = LayerNorm(x)
    v  = gelu(dv(h));  uf = gelu(du_forward(h));  ub = gelu(du_backward(flip(h)))
    yf = SSM_f(uf);    yb = SSM_b(ub)                 both causal:  y[t] = Σ_{s≤t} K[t-s] u[s] + D u[t]
    x  = x + do(gelu(dol(duc_forward(yf) * flip(duc_backward(yb)))) * v)

with the S4D zero-order-hold kernel, B = 1, computed here by the direct Vandermonde sum

    A = min(A_re, -1e-4) + i A_im,  Δ = exp(log_step),  K[l] = Re Σ_n (C_n (exp(ΔA_n) - 1) / A_n) exp(l Δ A_n).

gelu is the tanh approximation in the Flax layer (flax.linen.gelu) and the exact erf form in the port; the MLM head
uses config["hidden_act"] in both. Flax computes the kernel for max_position_embeddings taps and requires every
input to have that length; the port computes it for the input's length.
"""

from __future__ import annotations

import math

import torch


def gelu(x: torch.Tensor, approximate: bool) -> torch.Tensor:
    if approximate:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def activation(name: str):
    if name == "gelu":
        return lambda x: gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: gelu(x, approximate=True)
    raise ValueError(f"bigs_original: hidden_act {name!r} is not modelled here")


def s4d_kernel(A_re, A_im, C, log_step, length: int) -> torch.Tensor:
    """(length,) real: K[l] = Re Σ_n C_n B̄_n Ā_n^l, each tap summed over the modes one by one."""
    step = math.exp(float(log_step.reshape(())))
    taps = []
    for l in range(length):
        total = 0j
        for n in range(A_re.shape[0]):
            a = complex(min(float(A_re[n]), -1e-4), float(A_im[n]))
            c = complex(float(C[n, 0]), float(C[n, 1]))
            b_bar = (complexexp(step * a) - 1) / a
            total += c * b_bar * complexexp(l * step * a)
        taps.append(total.real)
    return torch.tensor(taps, dtype=torch.float64)


def complexexp(z: complex) -> complex:
    return math.exp(z.real) * complex(math.cos(z.imag), math.sin(z.imag))


def causal_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """u (B, L, H) -> y[:, t] = Σ_{s ≤ t} K[t-s] u[:, s] + D u[:, t], by the direct sum."""
    B, L, H = u.shape
    y = torch.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            y[:, t] += K[t - s] * u[:, s]
    return y + D.reshape(()) * u


class OriginalBiGS:
    """The original model over a flat {name: tensor} of one checkpoint.

    Args:
        params: the checkpoint's tensors under their original names (Flax paths joined with "/").
        config: the original BiGSConfig fields (config.json).
        flavour: "flax" or "torch" (the PyTorch port).
        base: the base model's prefix: "s4_bert/" (Flax) or "bigs." (port) by default.
    """

    def __init__(self, params: dict, config: dict, flavour: str, base: str | None = None):
        if flavour not in ("flax", "torch"):
            raise ValueError(flavour)
        self.p = {k: v.to(torch.float64) if v.is_floating_point() else v for k, v in params.items()}
        self.config = config
        self.flax = flavour == "flax"
        self.sep = "/" if self.flax else "."
        self.base = base if base is not None else ("s4_bert/" if self.flax else "bigs.")
        self.eps = config.get("layer_norm_eps", 1e-12)

    # building blocks over the original names --------------------------------------------------------------------
    def name(self, *parts) -> str:
        return self.sep.join(str(p) for p in parts)

    def dense(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        if self.flax:
            return x @ self.p[self.name(prefix, "kernel")] + self.p[self.name(prefix, "bias")]
        return x @ self.p[self.name(prefix, "weight")].T + self.p[self.name(prefix, "bias")]

    def layer_norm(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        scale = self.p[self.name(prefix, "scale" if self.flax else "weight")]
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * scale + self.p[self.name(prefix, "bias")]

    def table(self, prefix: str) -> torch.Tensor:
        return self.p[self.name(prefix, "embedding" if self.flax else "weight")]

    def ssm(self, layer: str, direction: str, u: torch.Tensor, length: int) -> torch.Tensor:
        def get(name):
            if self.flax or name == "D":
                return self.p[self.name(layer, direction, name)]
            return self.p[self.name(layer, direction, "kernel", name)]

        K = s4d_kernel(get("A_re"), get("A_im"), get("C"), get("log_step"), length)
        return causal_conv(u, K, get("D"))

    # the model -------------------------------------------------------------------------------------------------
    def layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        prefix = self.base + self.name("encoder", "layer", i)
        act = lambda t: gelu(t, approximate=self.flax)  # noqa: E731
        L = x.shape[1]
        h = self.layer_norm(self.name(prefix, "LayerNorm"), x)
        v = act(self.dense(self.name(prefix, "dv"), h))
        u_forward = act(self.dense(self.name(prefix, "du_forward"), h))
        u_backward = act(self.dense(self.name(prefix, "du_backward"), torch.flip(h, dims=[1])))
        y_forward = self.ssm(prefix, "fs4", u_forward, L)
        y_backward = self.ssm(prefix, "bs4", u_backward, L)
        mixed = self.dense(self.name(prefix, "duc_forward"), y_forward) * torch.flip(
            self.dense(self.name(prefix, "duc_backward"), y_backward), dims=[1]
        )
        return x + self.dense(self.name(prefix, "do"), act(self.dense(self.name(prefix, "dol"), mixed)) * v)

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) ids, already padded as the original expects -> (B, L, d)."""
        B, L = input_ids.shape
        if self.flax and L != self.config["max_position_embeddings"]:
            raise ValueError("the Flax original runs at max_position_embeddings only (causal_convolution's assert)")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        emb = self.base + "embeddings"
        x = self.table(self.name(emb, "word_embeddings"))[input_ids]
        x = x + self.table(self.name(emb, "token_type_embeddings"))[token_type_ids]
        if self.flax or self.config.get("position_embedding_type", "absolute") == "absolute":
            x = x + self.table(self.name(emb, "position_embeddings"))[torch.arange(L)][None]
        x = self.layer_norm(self.name(emb, "LayerNorm"), x)
        for i in range(self.config["num_hidden_layers"]):
            x = self.layer(i, x)
        return x

    def masked_lm_logits(self, input_ids, token_type_ids=None) -> torch.Tensor:
        """(B, L, V): transform (dense, hidden_act, LayerNorm), the decoder (tied to the word embeddings unless
        config["tie_word_embeddings"] is false), the bias."""
        h = self.encode(input_ids, token_type_ids)
        h = self.dense(self.name("cls", "predictions", "transform", "dense"), h)
        h = activation(self.config.get("hidden_act", "gelu"))(h)
        h = self.layer_norm(self.name("cls", "predictions", "transform", "LayerNorm"), h)
        if self.config.get("tie_word_embeddings", True):
            decoder = self.table(self.name(self.base + "embeddings", "word_embeddings")).T  # (d, V)
        elif self.flax:
            decoder = self.p[self.name("cls", "predictions", "decoder", "kernel")]
        else:
            decoder = self.p[self.name("cls", "predictions", "decoder", "weight")].T
        return h @ decoder + self.p[self.name("cls", "predictions", "bias")]

    def sequence_logits(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B, K): tanh(pooler(mean of h over the non-pad positions)), then the classifier."""
        h = self.encode(input_ids, token_type_ids)
        mask = attention_mask.to(torch.float64)
        pooled = (h * mask[..., None]).sum(-2) / mask.sum(-1, keepdim=True)
        pooled = torch.tanh(self.dense(self.base + self.name("pooler", "dense"), pooled))
        return self.dense("classifier", pooled)

    def token_logits(self, input_ids, token_type_ids=None) -> torch.Tensor:
        """(B, L, K)."""
        return self.dense("classifier", self.encode(input_ids, token_type_ids))
