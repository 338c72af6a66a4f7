r"""Tag-scheme constraints for a linear-chain CRF: which tag may start, follow another tag, or end a sequence.

Chunking labels name a chunk type X (``PER``, ``LOC`` …) with a one-letter prefix that says where the token sits in
its chunk: ``B-PER``, ``I-PER``, ``O``. The separator is ``-`` or ``_``; a bare prefix (``B``, ``I`` …) is an
untyped chunk. ``O`` is outside every chunk. A scheme forbids some tag bigrams, and the CRF bans them with -inf
added to its scores (``constraint_scores``), in training and in decoding.

| scheme (aliases) | tags                  | tag i may be followed by tag j when      | first tag   | last tag    |
|------------------|-----------------------|------------------------------------------|-------------|-------------|
| BIO (IOB2)       | O, B-X, I-X           | I-X only after B-X or I-X (the same X)   | O, B-X      | any         |
| IOBES (BIOES)    | O, B-X, I-X, E-X, S-X | i = B-X or I-X: j is I-X or E-X (same X) | O, B-X, S-X | O, E-X, S-X |
|                  |                       | i = O, E-X or S-X: j is O, B-Y or S-Y    |             |             |
| BILOU (BIOUL)    | O, B-X, I-X, L-X, U-X | as IOBES, with L for E and U for S       | O, B-X, U-X | O, L-X, U-X |
| none             | any labels            | always                                   | any         | any         |

Chunk types match exactly (case-sensitive). Scheme names are case-insensitive; ``"auto"`` reads the scheme from the
labels with ``detect_scheme``.

API:

* ``detect_scheme(labels) -> "BIO" | "IOBES" | "BILOU" | "none"``
* ``allowed_transitions(labels, scheme) -> (allowed (K, K), allowed_start (K,), allowed_end (K,))``, bool tensors;
  ``allowed[i, j]`` says tag i may be followed by tag j
* ``constraint_scores(allowed) -> float32 tensor``: 0 where allowed, -inf where not, to add to the CRF's scores
* ``is_legal_path(tags, labels, scheme) -> bool``: a tag-id path over the real positions obeys the scheme

Detection: every label must be ``O`` or parse with a prefix, at least one must be a chunk label, and the prefixes
must belong to one scheme (B/I: BIO; B/I/E/S with an E or S: IOBES; B/I/L/U with an L or U: BILOU). A label set that
could not produce a chunk of some type it names (I-X without B-X; in IOBES/BILOU a B-X or I-X without the E-X/L-X
that closes it, an I-X or E-X/L-X without the B-X that opens it) is reported as ``"none"``: its constraints would
ban tags the data uses, e.g. IOB1 data (where I-X may open a chunk) whose label set lacks B- tags. IOB1 with a full
label set cannot be told apart from BIO by the names alone: give ``tag_scheme="none"`` for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

SCHEMES = ("auto", "none", "IOB2", "BIO", "IOBES", "BIOES", "BILOU", "BIOUL")  # accepted names (case-insensitive)
_CANONICAL = {
    "AUTO": "auto",
    "NONE": "none",
    "IOB2": "BIO",
    "BIO": "BIO",
    "IOBES": "IOBES",
    "BIOES": "IOBES",
    "BILOU": "BILOU",
    "BIOUL": "BILOU",
}
_PREFIXES = {"BIO": "BI", "IOBES": "BIES", "BILOU": "BILU"}  # the chunk prefixes of each scheme
_ROLE = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}  # BILOU's L and U play IOBES's E and S
OUTSIDE = "O"
SEPARATORS = "-_"


def _parse(label) -> tuple[str, str] | None:
    """(prefix, chunk type) of a label: ("O", "") for O, ("B", "PER") for B-PER, ("B", "") for a bare B; None if
    the label has no prefix of any scheme."""
    if not isinstance(label, str):
        return None
    if label == OUTSIDE:
        return OUTSIDE, ""
    if len(label) == 1 and label in _ROLE:
        return label, ""
    if len(label) >= 3 and label[0] in _ROLE and label[1] in SEPARATORS:
        return label[0], label[2:]
    return None


def _check_labels(op: str, labels) -> list:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise ValueError(f"{op}: labels must be a list of tag names, got {type(labels).__name__}")
    labels = list(labels)
    if not labels:
        raise ValueError(f"{op}: labels must name at least one tag, got an empty list")
    seen: dict = {}
    for index, label in enumerate(labels):
        try:
            first = seen.setdefault(label, index)
        except TypeError:  # unhashable: not a tag name
            raise ValueError(f"{op}: labels must be tag names, got {label!r} (index {index})") from None
        if first != index:
            raise ValueError(
                f"{op}: labels must be distinct (one per tag id), got {label!r} at index {first} and index {index}"
            )
    return labels


def _canonical_scheme(op: str, scheme) -> str:
    canonical = _CANONICAL.get(scheme.upper()) if isinstance(scheme, str) else None
    if canonical is None:
        raise ValueError(f"{op}: scheme must be one of {SCHEMES} (any case), got {scheme!r}")
    return canonical


def _complete(parsed: list[tuple[str, str]], canonical: str) -> bool:
    """True when every chunk type can form a chunk with the tags it has (see the module docstring)."""
    roles: dict[str, set[str]] = {}
    for prefix, kind in parsed:
        if prefix != OUTSIDE:
            roles.setdefault(kind, set()).add(_ROLE[prefix])
    for present in roles.values():
        if canonical == "BIO" and "I" in present and "B" not in present:
            return False
        if canonical != "BIO" and present & {"B", "I", "E"} and not {"B", "E"} <= present:
            return False
    return True


def detect_scheme(labels: Sequence[str]) -> str:
    """The tag scheme of ``labels``: "BIO" (IOB2), "IOBES" (BIOES), "BILOU" (BIOUL), or "none" when the labels do not
    follow one (POS tags, a lone "O", mixed prefixes, an incomplete label set; see the module docstring)."""
    labels = _check_labels("detect_scheme", labels)
    parsed = [_parse(label) for label in labels]
    if any(p is None for p in parsed):
        return "none"
    prefixes = {prefix for prefix, _ in parsed} - {OUTSIDE}
    if not prefixes:
        return "none"
    for canonical in ("BIO", "IOBES", "BILOU"):  # BIO first: B/I-only labels are BIO, not a subset of the others
        if prefixes <= set(_PREFIXES[canonical]):
            return canonical if _complete(parsed, canonical) else "none"
    return "none"


def allowed_transitions(labels: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(allowed (K, K), allowed_start (K,), allowed_end (K,)) bool tensors for the K ``labels`` under ``scheme``.

    ``allowed[i, j]``: tag i may be followed by tag j; ``scheme``: one of ``SCHEMES`` (case-insensitive), "auto"
    detects it from the labels. A label that does not fit the scheme raises ``ValueError``.
    """
    op = "allowed_transitions"
    labels = _check_labels(op, labels)
    canonical = _canonical_scheme(op, scheme)
    if canonical == "auto":
        canonical = detect_scheme(labels)
    K = len(labels)
    if canonical == "none":
        everything = torch.ones(K, dtype=torch.bool)
        return torch.ones(K, K, dtype=torch.bool), everything, everything.clone()

    letters = _PREFIXES[canonical]
    tags = []  # (role, chunk type) per label, roles O/B/I/E/S
    for index, label in enumerate(labels):
        parsed = _parse(label)
        if parsed is None or (parsed[0] != OUTSIDE and parsed[0] not in letters):
            named = repr(canonical) if scheme == canonical else f"{scheme!r} ({canonical})"
            prefixes = "/".join(f"{p}-" for p in letters)
            raise ValueError(
                f"{op}: label {label!r} (index {index}) does not fit tag scheme {named}: each label must be "
                f"'O' or a prefix {prefixes} ('-' or '_') followed by a chunk type, e.g. '{letters[0]}-PER'; "
                f"use scheme 'none' for labels without a scheme"
            )
        prefix, kind = parsed
        tags.append((prefix if prefix == OUTSIDE else _ROLE[prefix], kind))

    roles = [role for role, _ in tags]
    kinds = [kind for _, kind in tags]
    same_kind = torch.tensor([[a == b for b in kinds] for a in kinds], dtype=torch.bool)  # (K, K)

    def role_is(*names: str) -> torch.Tensor:
        return torch.tensor([role in names for role in roles], dtype=torch.bool)  # (K,)

    if canonical == "BIO":
        inside = role_is("I")
        # j = I-X needs i = B-X or I-X; every other j may follow anything
        allowed = ~inside[None, :] | (role_is("B", "I")[:, None] & same_kind)
        return allowed, ~inside, torch.ones(K, dtype=torch.bool)

    # IOBES (BILOU mapped onto it): an open chunk (B, I) continues with I/E of its type; a closed one (O, E, S) or
    # the sequence's start is followed by O, B or S
    opened = role_is("B", "I")
    continues = role_is("I", "E")
    begins = role_is("O", "B", "S")
    allowed = torch.where(opened[:, None], continues[None, :] & same_kind, begins[None, :].expand(K, K))
    return allowed, begins, role_is("O", "E", "S")


def constraint_scores(allowed: torch.Tensor) -> torch.Tensor:
    """0.0 where ``allowed`` is true, -inf where it is false: float32, same shape and device, to add to the CRF's
    transitions, start or end scores."""
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
        got = allowed.dtype if isinstance(allowed, torch.Tensor) else type(allowed).__name__
        raise ValueError(f"constraint_scores: allowed must be a bool torch.Tensor, got {got}")
    if not (allowed.dim() == 1 or (allowed.dim() == 2 and allowed.shape[0] == allowed.shape[1])):
        raise ValueError(
            "constraint_scores: allowed must be (K, K) (transitions) or (K,) (start or end), got shape "
            f"{tuple(allowed.shape)}"
        )
    zero = torch.zeros((), dtype=torch.float32, device=allowed.device)
    return torch.where(allowed, zero, float("-inf"))


def is_legal_path(tags: Iterable[int], labels: Sequence[str], scheme: str) -> bool:
    """True when the tag ids ``tags`` (over a sequence's real positions, no padding) obey ``scheme`` for ``labels``:
    a legal first tag, legal bigrams, a legal last tag. The empty path is legal."""
    labels = _check_labels("is_legal_path", labels)
    allowed, allowed_start, allowed_end = allowed_transitions(labels, scheme)
    K = allowed.shape[0]
    path = [int(t) for t in (tags.tolist() if isinstance(tags, torch.Tensor) else tags)]
    for position, tag in enumerate(path):
        if not 0 <= tag < K:
            raise ValueError(f"is_legal_path: tags must be ids in [0, {K}), got {tag} at position {position}")
    if not path:
        return True
    bigrams_ok = all(bool(allowed[i, j]) for i, j in zip(path[:-1], path[1:]))
    return bool(allowed_start[path[0]]) and bigrams_ok and bool(allowed_end[path[-1]])
