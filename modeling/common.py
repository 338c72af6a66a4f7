"""Input checks shared by every bizoo model, run before any device work, and the BERT-style token embeddings
(word + position + token type) that LION and BiGS share.

Each raises ``ValueError`` that says what was wrong, the value or shape received, and what is allowed. The value
checks (ids inside the vocabulary, a 0/1 mask, finite embeddings, labels in range) run where ``value_checks`` says:
at once for values on the CPU, later for values on a GPU (the verdict read back without a host synchronisation;
meanwhile the call runs on the input made safe, which is why those checks return the tensor the model is to use),
not at all while ``torch.compile`` or ``torch.export`` trace. Shape, dtype and option checks run in every mode.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..kernels import dispatch
from .value_checks import check_mode, settle

# Keyword arguments the Trainer and the pipelines may pass to any model's forward.
IGNORED_KWARGS = ("num_items_in_batch", "output_attentions", "use_cache")


def encode_real_words(encoder: nn.Module, char_ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``encoder`` over the characters of the real words, zeros at padding: char_ids (..., C), keep (...) bool ->
    (..., F). In eager mode on a CPU only the real words are encoded (a gather); elsewhere every word is and the
    padding is zeroed after: the gather's size depends on the mask's values, which a traced graph cannot hold and a
    GPU would have to send back to the host."""
    if dispatch.tracing() or not dispatch.values_on_host(keep):
        out = encoder(char_ids.flatten(0, -2)).reshape(*keep.shape, -1)  # (..., F)
        return torch.where(keep[..., None], out, torch.zeros_like(out))
    words = encoder(char_ids[keep])  # (N, F): the real words only
    out = words.new_zeros(*keep.shape, words.shape[-1])  # (..., F)
    out[keep] = words
    return out


def settle_first_bad(mode: str, values: torch.Tensor, bad: torch.Tensor, message) -> None:
    """Settle (``value_checks.settle``) a check that fails where ``bad`` holds: ``message(v)`` is the error, ``v`` the
    first element of ``values`` (row-major) where ``bad`` holds, shown as ``.item()`` would (2 from an integer tensor,
    2.0 from a floating-point one). The element is found without a data-dependent shape or a tensor index (either
    would be read on the host)."""
    index = bad.flatten().to(torch.uint8).argmax(0, keepdim=True)  # (1,) the first True, or 0
    first = values.flatten().index_select(0, index)[0].double()  # ()
    numbers = torch.stack([bad.any().double(), first])  # (2,)
    floating = values.is_floating_point()
    settle(mode, numbers, lambda n: message(n[1] if floating else int(n[1])) if n[0] else None)


# What transformers' DataCollatorWithFlattening adds to sequences packed into one row: the positions restarting at
# every sequence, and optionally its sequence index or the boundaries flash-attention's varlen kernels read.
PACKED_KWARGS = ("position_ids", "seq_idx", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def check_kwargs(model_name: str, kwargs: dict, extra_ignored: tuple = ()) -> None:
    """Accept the keyword arguments the Trainer and pipelines may pass; reject anything else by name.

    ``position_ids=None`` is accepted (the model's own positions, as BERT's default). Given positions, or the
    boundaries of packed sequences (``PACKED_KWARGS``), are a ``TypeError`` that says why: a bizoo model reads one
    sequence per row, its padding marked by ``attention_mask``, and numbers the real tokens of each row itself (where
    it has learned positions at all); a row of sequences packed end to end (``DataCollatorWithFlattening``) would be
    read as ONE sequence, each sequence's recurrence, decay or SSM running on into the next, in both directions."""
    kwargs = {k: v for k, v in kwargs.items() if not (k == "position_ids" and v is None)}
    packed = sorted(set(kwargs) & set(PACKED_KWARGS))
    if packed:
        raise TypeError(
            f"{model_name}.forward() got {', '.join(packed)}, which this model does not take: it reads one sequence "
            "per row, padding marked by attention_mask, and numbers each row's real tokens itself; sequences "
            "packed into one row (transformers' DataCollatorWithFlattening) are not supported, since the model "
            "would read them as one sequence, each reading the next in both directions; pad the batch instead "
            "(DataCollatorWithPadding, DataCollatorForTokenClassification), and pass no position_ids"
        )
    unknown = sorted(set(kwargs) - set(IGNORED_KWARGS) - set(extra_ignored))
    if unknown:
        raise TypeError(f"{model_name}.forward() got unexpected keyword arguments {unknown}")
    if kwargs.get("output_attentions"):
        raise ValueError(
            f"{model_name}: output_attentions=True is not supported: this model forms no attention probabilities"
        )


def resolve_output_attentions(model_name: str, output_attentions, config) -> bool:
    """Whether a model that forms attention weights (LION) returns them: the forward's ``output_attentions`` when
    not None, else ``config.output_attentions``. Plain Python on the arguments (free, and a constant while traced);
    anything but True, False or None is a ``ValueError`` naming it."""
    source = "output_attentions" if output_attentions is not None else "config.output_attentions"
    value = output_attentions if output_attentions is not None else getattr(config, "output_attentions", False)
    if not isinstance(value, bool):
        raise ValueError(f"{model_name}: {source} must be True, False or None, got {value!r}")
    return value


def check_id_dtype(model_name: str, name: str, ids: torch.Tensor) -> None:
    """``ids`` (``input_ids``, ``token_type_ids``, ``char_ids``) hold int64 or int32 values, what an embedding table
    indexes with; another dtype is named in the error."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{model_name}: {name} must be an integer tensor, got {ids.dtype}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{model_name}: {name} must hold int64 or int32 ids (what an embedding indexes with), got "
                         f"{ids.dtype}; convert them with .long()")


def resolve_inputs(model_name: str, input_ids, inputs_embeds, hidden_size: int, size_name: str = "hidden_size"):
    """Exactly one of ``input_ids`` (B, L) and ``inputs_embeds`` (B, L, hidden_size), where hidden_size is the
    size of the model's word embeddings (the config field ``size_name``); returns (B, L)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"{model_name}: pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"{model_name}: input_ids must be a (batch, length) tensor, got {shape}")
        check_id_dtype(model_name, "input_ids", input_ids)
        batch, length = input_ids.shape
    else:
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3:
            shape = tuple(inputs_embeds.shape) if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds)
            raise ValueError(f"{model_name}: inputs_embeds must be (batch, length, {hidden_size}), got {shape}")
        if inputs_embeds.shape[-1] != hidden_size:
            raise ValueError(
                f"{model_name}: inputs_embeds must have last dim {size_name}={hidden_size}, "
                f"got {tuple(inputs_embeds.shape)}"
            )
        check_embeds_values(model_name, inputs_embeds)
        batch, length = inputs_embeds.shape[:2]
    if batch == 0 or length == 0:
        raise ValueError(f"{model_name}: the batch is empty (batch={batch}, length={length}); nothing to encode")
    return batch, length


def check_embeds_values(model_name: str, inputs_embeds: torch.Tensor) -> None:
    """``inputs_embeds`` is a floating-point tensor of finite values (one reduction)."""
    if not inputs_embeds.is_floating_point():
        raise ValueError(f"{model_name}: inputs_embeds must be a floating-point tensor, got {inputs_embeds.dtype}")
    mode = check_mode(inputs_embeds)
    if mode != "off":
        finite = torch.isfinite(inputs_embeds).all()[None]  # (1,)
        settle(mode, finite, lambda n: None if n[0] else f"{model_name}: inputs_embeds contains NaN or inf; "
               "allowed are finite values")


def check_ids_in_range(model_name: str, name: str, ids: torch.Tensor, size: int, size_name: str) -> torch.Tensor:
    """All of ``ids`` in [0, size). Returns the ids the model is to use: ``ids``, clamped into range where the
    check is read later."""
    mode = check_mode(ids)
    if mode == "off":
        return ids

    def explain(numbers):
        low, high = numbers
        if low >= 0 and high < size:
            return None
        return f"{model_name}: {name} holds {low if low < 0 else high}, outside [0, {size_name}={size})"

    settle(mode, torch.stack(torch.aminmax(ids)), explain)  # (2,) the smallest and the largest id
    return ids.clamp(0, size - 1) if mode == "later" else ids


def check_attention_mask(model_name: str, attention_mask, batch: int, length: int, device) -> torch.Tensor:
    """A (batch, length) mask of 0/1 values (any dtype), returned as long on ``device``; all ones if None. (Where
    the check is read later, any nonzero value counts as 1 meanwhile.)"""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.long, device=device)
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (batch, length):
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
        raise ValueError(
            f"{model_name}: attention_mask must have shape (batch, length) = ({batch}, {length}), got {shape}"
        )
    mode = check_mode(attention_mask) if attention_mask.dtype != torch.bool else "off"
    if mode != "off":
        bad = (attention_mask != 0) & (attention_mask != 1)  # (B, L)
        settle_first_bad(mode, attention_mask, bad, lambda v: (
            f"{model_name}: attention_mask must hold only 0 (padding) and 1 (real token), got {v}"))
        if mode == "later":
            attention_mask = attention_mask != 0
    return attention_mask.to(device=device, dtype=torch.long)


def check_token_type_ids(model_name: str, token_type_ids, batch: int, length: int, type_vocab_size: int):
    """``token_type_ids`` checked against the input's shape and the type table; None stays None, and all-zero ids
    for a model without token types (``type_vocab_size=0``) become None."""
    if token_type_ids is None:
        return None
    check_token_type_ids_shape(model_name, token_type_ids, batch, length)
    if type_vocab_size == 0:
        mode = check_mode(token_type_ids)
        if mode != "off":
            settle(mode, token_type_ids.any()[None], lambda n: None if not n[0] else (
                f"{model_name}: token_type_ids given but the model has no token types (type_vocab_size=0)"))
        return None
    return check_ids_in_range(model_name, "token_type_ids", token_type_ids, type_vocab_size, "type_vocab_size")


def check_token_type_ids_shape(model_name: str, token_type_ids, batch: int, length: int) -> None:
    """``token_type_ids`` (None, or an integer tensor of the input's shape (batch, length)). A model without token
    types (BiLSTM-CRF, ELMo) accepts them, since the Trainer and the collators may pass them, checks only this and
    ignores their values."""
    if token_type_ids is None:
        return
    if not isinstance(token_type_ids, torch.Tensor) or tuple(token_type_ids.shape) != (batch, length):
        shape = tuple(token_type_ids.shape) if isinstance(token_type_ids, torch.Tensor) else type(token_type_ids)
        raise ValueError(
            f"{model_name}: token_type_ids must have shape (batch, length) = ({batch}, {length}), got {shape}"
        )
    check_id_dtype(model_name, "token_type_ids", token_type_ids)


def check_char_ids(
    model_name: str, char_ids, batch: int, length: int, char_vocab_size: int, min_width: int = 1, width_reason: str = ""
):
    """``char_ids`` (batch, length, width >= min_width), integer ids in [0, char_vocab_size); ``width_reason`` says
    where ``min_width`` comes from (e.g. the widest character filter). Returns the ids the model is to use
    (``check_ids_in_range``)."""
    if not isinstance(char_ids, torch.Tensor) or char_ids.dim() != 3 or tuple(char_ids.shape[:2]) != (batch, length):
        shape = tuple(char_ids.shape) if isinstance(char_ids, torch.Tensor) else type(char_ids).__name__
        raise ValueError(
            f"{model_name}: char_ids must have shape (batch, words, max_chars) = ({batch}, {length}, C), got {shape}"
        )
    check_id_dtype(model_name, "char_ids", char_ids)
    if char_ids.shape[2] < min_width:
        need = f", fewer than {width_reason}" if width_reason else f"; at least {min_width} are needed"
        raise ValueError(f"{model_name}: char_ids rows hold {char_ids.shape[2]} characters{need}")
    return check_ids_in_range(model_name, "char_ids", char_ids, char_vocab_size, "char_vocab_size")


def check_positions(model_name: str, mask: torch.Tensor, max_positions: int) -> None:
    """Every sequence's real tokens fit the learned position table (mask (B, L)). (``TokenEmbeddings`` clamps the
    positions into the table, so a check read later leaves the device running meanwhile.)"""
    mode = check_mode(mask)
    if mode == "off":
        return

    def explain(numbers):
        longest = int(numbers[0])
        if longest <= max_positions:
            return None
        return (
            f"{model_name}: a sequence has {longest} tokens but the model's learned positions stop at "
            f"max_position_embeddings={max_positions}; truncate the input "
            f"(tokenizer(..., truncation=True, max_length={max_positions}))"
        )

    settle(mode, mask.sum(-1).max()[None], explain)  # (1,) the longest row's real tokens


def word_char_dummy_inputs(input_ids: torch.Tensor, width: int, char_vocab_size: int) -> dict[str, torch.Tensor]:
    """``dummy_inputs`` of a model that reads characters: transformers' dummy ``input_ids`` (B, L), 0 = padding, and
    the ``char_ids`` (B, L, width) the model needs beside them, so that ``model(**model.dummy_inputs)`` runs as it
    does for a transformers model. Word w > 0 is spelled by ``width`` copies of c = 1 + w mod (char_vocab_size - 2),
    in [1, char_vocab_size - 2] (never 0, padding, nor char_vocab_size - 1, bilm-tf's padding inside a word); a
    padded word (w = 0) has no characters (a row of zeros)."""
    chars = 1 + input_ids % max(char_vocab_size - 2, 1)  # (B, L)
    chars = chars.masked_fill(input_ids == 0, 0)
    return {"input_ids": input_ids, "char_ids": chars[..., None].expand(*input_ids.shape, width).contiguous()}


def check_labels(model_name: str, labels: torch.Tensor, shape: tuple, num_classes: int, what: str) -> torch.Tensor:
    """Class labels of ``shape`` in [0, num_classes) or -100 (ignored), of any integer dtype. Returns the labels the
    model is to use: ``labels`` as int64 (what the losses take), with bad ones set to -100 where the check is read
    later."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{model_name}: labels must be a torch.Tensor ({what}), got {type(labels).__name__}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{model_name}: labels must have shape {tuple(shape)} ({what}), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{model_name}: labels must be integer class ids ({what}), got {labels.dtype}")
    labels = labels.long()  # int32, uint8, ...: the same ids (a no-op for int64)
    mode = check_mode(labels)
    if mode == "off":
        return labels
    bad = (labels != -100) & ((labels < 0) | (labels >= num_classes))  # labels' shape
    settle_first_bad(mode, labels, bad, lambda v: (
        f"{model_name}: labels hold {v}; allowed are 0..{num_classes - 1} and -100 (ignored)"))
    return labels.masked_fill(bad, -100) if mode == "later" else labels


class Dropout(nn.Dropout):
    """``nn.Dropout`` (an instance of it, the same ``p`` and ``inplace``), drawing its mask with ``torch.rand`` where it
    runs on a CPU in eager training: there torch's ``bernoulli_``, which ``nn.Dropout`` draws with, costs 1.4-3.8x
    more (a (32, 40, 400) batch on 2 cores: 4.8 against 1.2 ms at p = 0.5, 2.8 against 2.0 at p = 0.1). The same
    distribution: each element kept with probability 1 - p (a uniform draw in fp32, whatever the input's dtype, at
    least p) and scaled by 1 / (1 - p), the gradient through the same mask. Elsewhere (a GPU's fused kernel, graphs
    traced by torch.compile or torch.export, evaluation, p = 0 or 1) ``nn.Dropout`` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or not 0.0 < self.p < 1.0 or x.device.type != "cpu" or dispatch.tracing()
                or dispatch.exporting()):
            return super().forward(x)
        keep = torch.rand(x.shape, device=x.device) >= self.p  # (...) bool: kept with probability 1 - p
        scale = 1.0 / (1.0 - self.p)
        if self.inplace:
            return x.mul_(keep).mul_(scale)
        return x * keep * scale


class HalfSafeLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (an instance of it, the same parameters and state-dict keys) that normalises an fp16 input on a
    CPU in fp32 and returns fp16; elsewhere (other dtypes, a GPU's kernel, which keeps its statistics in fp32, and
    under autocast, which runs the norm in fp32) ``nn.LayerNorm`` itself. torch's fp16 kernel on a CPU keeps
    1 / sqrt(var + eps) in fp16: for a row that is exactly constant, as the rows a model zeroes at padded positions,
    with eps = 1e-12 (BERT's, the configs' default) it is inf, and the backward pass then gives NaN gradients to the
    norm's weight and everything before it, though the forward output there is finite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float16 or x.device.type != "cpu" or torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return nn.functional.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class TokenEmbeddings(nn.Module):
    r"""e_t = LayerNorm(W_word[x_t] + W_pos[p_t] + W_type[s_t]), then dropout.

    Positions p_t count real tokens only (p = cumsum(mask) - 1), so left padding does not shift them. The position
    table exists when ``position_embedding_type == "absolute"``, the token-type table when ``type_vocab_size > 0``.

    Shape: input_ids (B, L) or inputs_embeds (B, L, d) -> (B, L, d).
    """

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding_type == "absolute"
            else None
        )
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.layer_norm = HalfSafeLayerNorm(config.hidden_size, eps=config.layer_norm_eps)  # a pad row may be 0
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, inputs_embeds, token_type_ids, attention_mask) -> torch.Tensor:
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, d)
        if self.position_embeddings is not None:
            top = self.position_embeddings.num_embeddings - 1  # a longer row is an error (check_positions)
            positions = (attention_mask.cumsum(-1) - 1).clamp(0, top)  # (B, L)
            x = x + self.position_embeddings(positions)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(attention_mask)
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.layer_norm(x))


def fp32_pattern(name: str) -> re.Pattern:
    """A name of ``_keep_in_fp32_modules(_strict)`` as one whole dot-separated part of a parameter's qualified name
    (``crf`` matches ``classifier.crf.start``), as transformers' model tests match it. (Its loader searches the name
    anywhere in the key; no other key of a bizoo model contains ``decay``, ``fs4``, ``bs4`` or ``crf``.)"""
    return re.compile(rf"(?:^|\.){re.escape(name)}(?:\.|$)")


class StrictFp32Modules:
    """Mixed into each model family's ``PreTrainedModel`` base (before it): the modules named in the class's
    ``_keep_in_fp32_modules_strict`` keep fp32 parameters whatever dtype the model is built or loaded in.

    transformers reads two lists. ``_keep_in_fp32_modules`` is upcast only when a model is loaded in fp16 (it exists
    for weights trained in bf16); ``_keep_in_fp32_modules_strict`` in fp16 and in bf16. bizoo's decays, SSM and CRF
    parameters go on the strict list alone (ARCHITECTURE.md §3, "Precision"): bf16 keeps 8 significant bits, which
    leave 1 - λ of a long-range decay (LION's retnet λ = 1 - 2^-12, stored as its logit ≈ 8.3) off by up to 3%, an
    error that the powers λ^t over a long sequence carry; SSM poles and steps, and CRF scores summed along a path,
    fare alike. bf16 is no safer for them than fp16.

    What this adds to transformers' own handling:

    * The class lists every module name that some configuration builds; each model keeps, as its instance-level
      list, only the names that its own configuration built (LION-LIT has no ``decay``, a head without ``use_crf``
      no ``crf``), so the list never names a module that does not exist.
    * ``from_pretrained(dtype=...)`` upcasts those modules while loading, but ``from_config(dtype=...)`` and the
      meta-device skeleton of ``from_pretrained`` build them in the default dtype, so a missing tensor of a partial
      checkpoint, or a model built from a config, would stay fp16/bf16. Here they are made fp32 when the model is
      built, before its weights are initialised (the initial values are drawn in fp32).
    * A built model cast as a whole (``model.to(torch.bfloat16)``, ``.half()``, ``.bfloat16()``, the Trainer's
      ``bf16_full_eval``) keeps them fp32 too (``_apply``): their parameters and gradients are moved as asked but
      never cast to fp16/bf16, so their values make no round trip through 8 bits (over a long sequence a BiGS
      kernel's phases turned to noise: relative error 1.3 against 0.03 for the model loaded in bf16). Only fp32 is
      kept from being lowered: a model cast to fp64 first (``.double().half()``) casts them as asked. The model's
      parameters then have two dtypes, as after ``from_pretrained(dtype=torch.bfloat16)``: FSDP, which wants one,
      takes an fp32 model with ``MixedPrecisionPolicy(param_dtype=torch.bfloat16)`` instead.
    """

    _keep_in_fp32_modules_strict: list[str] | None = None

    def post_init(self):
        candidates = type(self)._keep_in_fp32_modules_strict or []
        names = [name for name, _ in self.named_parameters()] + [name for name, _ in self.named_buffers()]
        present = [c for c in candidates if any(fp32_pattern(c).search(name) for name in names)]
        self._keep_in_fp32_modules_strict = present  # instance level: transformers reads this model's own list
        for name, module in self.named_modules():
            if name.rsplit(".", 1)[-1] in present:
                module.float()
        super().post_init()

    def _apply(self, fn, recurse=True):
        """``nn.Module._apply`` (what ``.to``, ``.half``, ``.cuda`` ... run on every tensor), with ``fn`` never
        lowering an fp32 tensor of the strict fp32 modules (parameter, buffer or gradient) to fp16 or bf16: it is
        moved to the device asked for, its values kept. Other casts (fp64) and other tensors are ``fn``'s."""
        present = getattr(self, "_keep_in_fp32_modules_strict", None) or []
        kept = {}  # id -> the tensor itself: held for the call, so that no other tensor can take a freed id
        for name, module in self.named_modules():
            if name.rsplit(".", 1)[-1] in present:
                for tensor in (*module.parameters(), *module.buffers()):
                    kept[id(tensor)] = tensor
                    if getattr(tensor, "grad", None) is not None:
                        kept[id(tensor.grad)] = tensor.grad

        def keep_fp32(tensor):
            out = fn(tensor)
            lowered = tensor.dtype == torch.float32 and out.dtype in (torch.float16, torch.bfloat16)
            if lowered and kept.get(id(tensor)) is tensor:
                return tensor.to(device=out.device)
            return out

        return super()._apply(keep_fp32 if kept else fn, recurse)


class DamagedCheckpointErrors:
    """Mixed into each model family's ``PreTrainedModel`` base: ``from_pretrained`` of a folder whose safetensors
    weights are truncated or corrupted raises an ``OSError`` that says so and names the folder, instead of
    safetensors' bare "Error while deserializing header" from deep inside the loader.

    It also applies the model's ``apply_freezing()`` (where it has one: BiGS's ``freeze_ssm``, the ELMo tagger's
    ``freeze_elmo``) to the loaded model: transformers' loader puts new parameters, all trainable, in place of the
    ones the model froze when it was built."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
            model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading info): output_loading_info
            if hasattr(model, "apply_freezing"):
                model.apply_freezing()
            return loaded
        except Exception as err:
            if type(err).__name__ != "SafetensorError":  # safetensors' own error type, not imported here
                raise
            raise OSError(
                f"{cls.__name__}.from_pretrained({str(pretrained_model_name_or_path)!r}): the weights file "
                f"(model.safetensors or one of its shards) is truncated or corrupted ({err}); save or download the "
                "checkpoint again"
            ) from err
