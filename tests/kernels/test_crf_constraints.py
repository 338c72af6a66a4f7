"""Tag-scheme constraints: hand-checked matrices, scheme detection, errors, and the constrained CRF against an
enumeration of the legal paths.

Legality is checked twice, independently: ``is_legal_path`` (built on ``allowed_transitions``) and a regular
expression over the label names written here from the rules (a chunk is ``O``, ``B-X (I-X)*`` in BIO,
``S-X`` or ``B-X (I-X)* E-X`` in IOBES). The enumeration of legal paths uses the regular expression, so the CRF
checks below do not trust the matrices they test.
"""

import functools
import itertools
import os
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bizoo.kernels.crf import (
    crf_log_likelihood,
    crf_log_partition,
    crf_marginals,
    crf_max_marginals,
    crf_viterbi,
)
from bizoo.kernels.crf.constraints import (
    SCHEMES,
    allowed_transitions,
    constraint_scores,
    detect_scheme,
    is_legal_path,
)

NEG = float("-inf")
BACKENDS = ("reference", "scan")
PROPERTY = settings(max_examples=50, deadline=None, database=None, derandomize=True)

# Small label sets of each scheme; every one has "O", so every length has a legal path.
LABEL_SETS = {
    "BIO": (("O", "B-A", "I-A", "B-B", "I-B"), ("O", "B_A", "I_A", "B", "I")),
    "IOBES": (("O", "B-A", "I-A", "E-A", "S-A"), ("O", "B-A", "E-A", "B-B", "E-B")),
    "BILOU": (("O", "B-A", "I-A", "L-A", "U-A"), ("O", "U-A", "B-B", "L-B", "U-B")),
    "none": (("NN", "VB", "DT", "O"),),
}
RULES = {  # one token per tag, "P:X " (prefix, chunk type); group 1 is the type of the open chunk
    "BIO": re.compile(r"(?:O |B:(\w*) (?:I:\1 )*)*"),
    "IOBES": re.compile(r"(?:O |S:\w* |B:(\w*) (?:I:\1 )*E:\1 )*"),
    "BILOU": re.compile(r"(?:O |U:\w* |B:(\w*) (?:I:\1 )*L:\1 )*"),
}


def legal_by_rules(names, scheme) -> bool:
    """The path of label names ``names`` obeys ``scheme``, by the regular expressions above."""
    if scheme == "none":
        return True
    text = "".join("O " if n == "O" else f"{n[0]}:{n[2:]} " for n in names)
    return RULES[scheme].fullmatch(text) is not None


def tensors(labels, scheme):
    """The (allowed, start, end) matrices as nested Python lists of 0/1."""
    return [a.int().tolist() for a in allowed_transitions(labels, scheme)]


# ----------------------------------------------------------------------------------------------------------------
# Hand-checked matrices
# ----------------------------------------------------------------------------------------------------------------


def test_bio_matrix():
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    allowed, start, end = tensors(labels, "BIO")
    assert allowed == [
        # O  B-A I-A B-B I-B   (next tag)
        [1, 1, 0, 1, 0],  # O
        [1, 1, 1, 1, 0],  # B-A
        [1, 1, 1, 1, 0],  # I-A
        [1, 1, 0, 1, 1],  # B-B
        [1, 1, 0, 1, 1],  # I-B
    ]
    assert start == [1, 1, 0, 1, 0]
    assert end == [1, 1, 1, 1, 1]


def test_iobes_matrix_one_type():
    labels = ["O", "B-A", "I-A", "E-A", "S-A"]
    allowed, start, end = tensors(labels, "IOBES")
    assert allowed == [
        # O  B-A I-A E-A S-A
        [1, 1, 0, 0, 1],  # O
        [0, 0, 1, 1, 0],  # B-A
        [0, 0, 1, 1, 0],  # I-A
        [1, 1, 0, 0, 1],  # E-A
        [1, 1, 0, 0, 1],  # S-A
    ]
    assert start == [1, 1, 0, 0, 1]
    assert end == [1, 0, 0, 1, 1]


def test_iobes_matrix_two_types():
    labels = ["S-B", "B-A", "E-B", "E-A", "I-B", "B-B"]
    allowed, start, end = tensors(labels, "IOBES")
    assert allowed == [
        # S-B B-A E-B E-A I-B B-B
        [1, 1, 0, 0, 0, 1],  # S-B
        [0, 0, 0, 1, 0, 0],  # B-A
        [1, 1, 0, 0, 0, 1],  # E-B
        [1, 1, 0, 0, 0, 1],  # E-A
        [0, 0, 1, 0, 1, 0],  # I-B
        [0, 0, 1, 0, 1, 0],  # B-B
    ]
    assert start == [1, 1, 0, 0, 0, 1]
    assert end == [1, 0, 1, 1, 0, 0]


def test_bilou_matrix():
    labels = ["U-A", "O", "L-A", "B-A", "I-A"]
    allowed, start, end = tensors(labels, "BILOU")
    assert allowed == [
        # U-A O L-A B-A I-A
        [1, 1, 0, 1, 0],  # U-A
        [1, 1, 0, 1, 0],  # O
        [1, 1, 0, 1, 0],  # L-A
        [0, 0, 1, 0, 1],  # B-A
        [0, 0, 1, 0, 1],  # I-A
    ]
    assert start == [1, 1, 0, 1, 0]
    assert end == [1, 1, 1, 0, 0]


def test_none_allows_everything():
    for labels, scheme in ((["NN", "VB", "DT"], "none"), (["NN", "VB", "DT"], "auto"), (["O", "B-A", "I-A"], "none")):
        allowed, start, end = allowed_transitions(labels, scheme)
        assert allowed.dtype == start.dtype == end.dtype == torch.bool
        assert allowed.shape == (len(labels), len(labels)) and start.shape == end.shape == (len(labels),)
        assert allowed.all() and start.all() and end.all()


@pytest.mark.parametrize(
    "alias, canonical",
    [("IOB2", "BIO"), ("bio", "BIO"), ("iob2", "BIO"), ("BIOES", "IOBES"), ("iobes", "IOBES"), ("BIOUL", "BILOU"),
     ("bilou", "BILOU"), ("AUTO", "BIO"), ("auto", "BIO")],
)
def test_scheme_aliases(alias, canonical):
    labels = {"BIO": ["O", "B-A", "I-A"], "IOBES": ["O", "B-A", "I-A", "E-A", "S-A"],
              "BILOU": ["O", "B-A", "I-A", "L-A", "U-A"]}[canonical]
    assert tensors(labels, alias) == tensors(labels, canonical)


def test_separators_and_bare_prefixes():
    assert tensors(["O", "B_A", "I_A"], "BIO") == tensors(["O", "B-A", "I-A"], "BIO")
    assert tensors(["O", "B", "I"], "BIO") == tensors(["O", "B-A", "I-A"], "BIO")
    # the type after the first separator is kept whole: B-geo-nam and I-geo-nam are one type
    assert tensors(["B-geo-nam", "I-geo-nam", "I-geo"], "BIO")[0] == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]


def test_every_accepted_scheme_name():
    """Every accepted name gives its family's matrices for O, B-A, I-A, written out by hand: (allowed[prev][next],
    start, end). In IOBES/BILOU these labels lack E-A/S-A (L-A/U-A): a chunk opened by B-A can never close, so only
    O may end a sentence and B-A, I-A lead only to I-A."""
    bio = [[[1, 1, 0], [1, 1, 1], [1, 1, 1]], [1, 1, 0], [1, 1, 1]]  # I-A only after B-A or I-A, never first
    closing = [[[1, 1, 0], [0, 0, 1], [0, 0, 1]], [1, 1, 0], [1, 0, 0]]
    free = [[[1, 1, 1], [1, 1, 1], [1, 1, 1]], [1, 1, 1], [1, 1, 1]]
    expected = {"auto": bio, "none": free, "IOB2": bio, "BIO": bio, "IOBES": closing, "BIOES": closing,
                "BILOU": closing, "BIOUL": closing}
    assert set(expected) == set(SCHEMES)
    for scheme in SCHEMES:
        for name in (scheme, scheme.lower()):
            assert tensors(["O", "B-A", "I-A"], name) == expected[scheme], name
    # A full IOBES and a full BILOU label set (L plays E, U plays S): the names of its own family and "auto" give
    # the one matrix below, "none" allows everything, the names of the two other families refuse the labels.
    full = [[[1, 1, 0, 0, 1], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [1, 1, 0, 0, 1], [1, 1, 0, 0, 1]],
            [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]]  # B-A, I-A go on with I-A or E-A (L-A); only O, E-A, S-A end
    free = [[[1] * 5] * 5, [1] * 5, [1] * 5]
    family = {"IOB2": "BIO", "BIO": "BIO", "IOBES": "IOBES", "BIOES": "IOBES", "BILOU": "BILOU", "BIOUL": "BILOU"}
    for labels, own in ((["O", "B-A", "I-A", "E-A", "S-A"], "IOBES"), (["O", "B-A", "I-A", "L-A", "U-A"], "BILOU")):
        for scheme in SCHEMES:
            for name in (scheme, scheme.lower()):
                if scheme in ("auto", "none") or family[scheme] == own:
                    assert tensors(labels, name) == (free if scheme == "none" else full), (labels, name)
                else:
                    with pytest.raises(ValueError, match="does not fit tag scheme"):
                        allowed_transitions(labels, name)


# ----------------------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, scheme",
    [
        (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO"),
        (["B-PER", "I-PER", "O"], "BIO"),
        (["O", "B-PER"], "BIO"),  # one-token chunks only
        (["O", "B_PER", "I_PER"], "BIO"),
        (["O", "B", "I"], "BIO"),
        (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "IOBES"),
        (["O", "S-PER"], "IOBES"),
        (["O", "B-PER", "E-PER"], "IOBES"),
        (["O", "B-PER", "I-PER", "L-PER", "U-PER"], "BILOU"),
        (["O", "U-PER"], "BILOU"),
        (["NN", "VB", "DT", "JJ"], "none"),  # POS tags
        (["O"], "none"),  # no chunk label
        (["O", "B-PER", "PER"], "none"),  # a label without a prefix
        (["O", "B-PER", "I-PER", "E-PER", "U-PER"], "none"),  # prefixes of two schemes
        (["O", "I-PER", "I-LOC"], "none"),  # IOB1 without B-: BIO constraints would ban every tag but O
        (["O", "B-PER", "I-PER", "I-LOC"], "none"),  # I-LOC could never start
        (["O", "B-PER", "I-PER", "S-PER"], "none"),  # IOBES without E-: B-PER could never close
        (["O", "E-PER", "S-PER"], "none"),  # E-PER could never open
        (["O", "B-", "I-"], "none"),  # a separator without a type
        (["o", "b-PER"], "none"),  # prefixes are upper case
        (["O", "M-PER", "B-PER"], "none"),  # BMES is not a supported scheme
        ([0, 1], "none"),  # not names at all
    ],
)
def test_detect_scheme(labels, scheme):
    assert detect_scheme(labels) == scheme


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------


def test_empty_labels():
    for call in (lambda: allowed_transitions([], "BIO"), lambda: allowed_transitions([], "none"),
                 lambda: detect_scheme([])):
        with pytest.raises(ValueError, match="labels must name at least one tag"):
            call()


def test_labels_must_be_a_list():
    with pytest.raises(ValueError, match="labels must be a list"):
        allowed_transitions("O B-A I-A", "BIO")


def test_unknown_scheme():
    with pytest.raises(ValueError, match=r"scheme must be one of .*IOB2.*got 'IOB1'"):
        allowed_transitions(["O", "B-A"], "IOB1")
    with pytest.raises(ValueError, match="scheme must be one of"):
        allowed_transitions(["O", "B-A"], None)


@pytest.mark.parametrize(
    "labels, scheme, bad, allowed",
    [
        (["O", "B-PER", "E-PER"], "BIO", "'E-PER' (index 2)", "B-/I-"),
        (["O", "B-PER", "I-PER", "L-PER"], "IOB2", "'L-PER' (index 3)", "B-/I-"),
        (["O", "B-PER", "L-PER"], "IOBES", "'L-PER' (index 2)", "B-/I-/E-/S-"),
        (["O", "B-PER", "E-PER"], "bilou", "'E-PER' (index 2)", "B-/I-/L-/U-"),
        (["PER", "O"], "BIO", "'PER' (index 0)", "B-/I-"),
        (["O", "B-"], "BIOES", "'B-' (index 1)", "B-/I-/E-/S-"),
    ],
)
def test_label_that_does_not_fit(labels, scheme, bad, allowed):
    with pytest.raises(ValueError) as info:
        allowed_transitions(labels, scheme)
    message = str(info.value)
    assert bad in message and repr(scheme) in message and allowed in message and "'O'" in message


def test_constraint_scores():
    allowed, start, end = allowed_transitions(["O", "B-A", "I-A"], "BIO")
    scores = constraint_scores(allowed)
    assert scores.dtype == torch.float32 and scores.shape == (3, 3) and scores.device == allowed.device
    assert torch.equal(scores == 0, allowed) and torch.equal(scores == NEG, ~allowed)
    assert constraint_scores(start).tolist() == [0.0, 0.0, NEG]
    assert constraint_scores(end).tolist() == [0.0, 0.0, 0.0]
    for bad in (allowed.int(), allowed.float(), [[True]]):
        with pytest.raises(ValueError, match="allowed must be a bool torch.Tensor"):
            constraint_scores(bad)


def test_is_legal_path_checks_tag_ids():
    labels = ["O", "B-A", "I-A"]
    assert is_legal_path([], labels, "BIO")
    assert is_legal_path(torch.tensor([1, 2, 0]), labels, "BIO")
    for bad in ([0, 3], [-100, 0], [-1]):
        with pytest.raises(ValueError, match=r"tags must be ids in \[0, 3\)"):
            is_legal_path(bad, labels, "BIO")


# ----------------------------------------------------------------------------------------------------------------
# is_legal_path against the rules, exhaustively on short paths
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["BIO", "IOBES", "BILOU", "none"])
def test_is_legal_path_matches_rules(scheme):
    for labels in LABEL_SETS[scheme]:
        assert detect_scheme(labels) == scheme
        K = len(labels)
        legal_count = 0
        for n in range(5):
            for path in itertools.product(range(K), repeat=n):
                expected = legal_by_rules([labels[t] for t in path], scheme)
                assert is_legal_path(path, labels, scheme) == expected, (labels, path)
                legal_count += expected
        assert 0 < legal_count < sum(K**n for n in range(5)) or scheme == "none"


# ----------------------------------------------------------------------------------------------------------------
# The constrained CRF (hypothesis): random scores, masks with right/left padding, holes and empty rows
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def legal_paths(labels: tuple, scheme: str, n: int) -> torch.Tensor:
    """Every legal path of length n (P, n), by the rules."""
    paths = [p for p in itertools.product(range(len(labels)), repeat=n)
             if legal_by_rules([labels[t] for t in p], scheme)]
    return torch.tensor(paths, dtype=torch.long).view(len(paths), n)


@st.composite
def mask_rows(draw, L):
    kind = draw(st.sampled_from(("full", "right", "left", "empty", "holes")))
    if kind == "holes":
        return draw(st.lists(st.booleans(), min_size=L, max_size=L))
    n = {"full": L, "empty": 0}.get(kind)
    n = draw(st.integers(1, L)) if n is None else n
    row = [True] * n + [False] * (L - n)
    return row[::-1] if kind == "left" else row


@st.composite
def crf_cases(draw, scheme):
    """(labels, emissions, mask, transitions, start, end): unconstrained scores and a label order."""
    labels = draw(st.sampled_from(LABEL_SETS[scheme]))
    labels = tuple(draw(st.permutations(labels)))
    B, L = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    mask = torch.tensor([draw(mask_rows(L)) for _ in range(B)], dtype=torch.bool)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    K = len(labels)
    if draw(st.booleans()):  # small integers: many exact ties
        sample = lambda *shape: torch.randint(-1, 2, shape, generator=g).float()  # noqa: E731
    else:
        sample = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    return labels, sample(B, L, K) * 2, mask, sample(K, K), sample(K), sample(K)


def constrained(labels, scheme, transitions, start, end):
    t_bias, s_bias, e_bias = (constraint_scores(a) for a in allowed_transitions(labels, scheme))
    return transitions + t_bias, start + s_bias, end + e_bias


def enumerate_row(labels, scheme, emissions, mask, transitions, start, end, b):
    """(real positions, legal paths (P, n), their fp64 scores (P,)) of row b, from the unconstrained scores."""
    pos = mask[b].nonzero().flatten()
    paths = legal_paths(labels, scheme, len(pos))
    n = len(pos)
    em = emissions[b, pos].double()  # (n, K)
    score = start.double()[paths[:, 0]] + end.double()[paths[:, -1]] + em[torch.arange(n), paths].sum(1)
    if n > 1:
        score = score + transitions.double()[paths[:, :-1], paths[:, 1:]].sum(1)
    return pos, paths, score


SCHEME_PARAMS = pytest.mark.parametrize("scheme", ["BIO", "IOBES", "BILOU", "none"])


@SCHEME_PARAMS
@PROPERTY
@given(data=st.data())
def test_constrained_decoding_is_legal(scheme, data):
    """Viterbi emits only legal paths, of the best legal score; argmax of the max-marginals is that path."""
    labels, emissions, mask, transitions, start, end = data.draw(crf_cases(scheme))
    T, s, e = constrained(labels, scheme, transitions, start, end)
    for backend in BACKENDS:
        tags, scores = crf_viterbi(emissions, mask, T, s, e, backend=backend)
        assert torch.equal(tags == -100, ~mask)
        mm = crf_max_marginals(emissions, mask, T, s, e, backend=backend)
        assert torch.equal(mm.argmax(-1)[mask], tags[mask]), backend
        for b in range(len(mask)):
            path = tags[b][mask[b]].tolist()
            assert is_legal_path(path, labels, scheme), (backend, labels, path)
            assert legal_by_rules([labels[t] for t in path], scheme)
            if mask[b].any():
                _, _, legal_scores = enumerate_row(labels, scheme, emissions, mask, transitions, start, end, b)
                torch.testing.assert_close(scores[b].double(), legal_scores.max(), atol=1e-4, rtol=1e-5)
            else:
                assert scores[b] == 0


@SCHEME_PARAMS
@PROPERTY
@given(data=st.data())
def test_constrained_partition_and_marginals_match_enumeration(scheme, data):
    """log Z and the marginals sum over the legal paths only; no mass on a banned first or last tag."""
    labels, emissions, mask, transitions, start, end = data.draw(crf_cases(scheme))
    T, s, e = constrained(labels, scheme, transitions, start, end)
    B, L, K = emissions.shape
    expected_log_z = torch.zeros(B, dtype=torch.float64)
    expected_marginals = torch.zeros(B, L, K, dtype=torch.float64)
    for b in range(B):
        if mask[b].any():
            pos, paths, score = enumerate_row(labels, scheme, emissions, mask, transitions, start, end, b)
            expected_log_z[b] = torch.logsumexp(score, 0)
            weight = torch.exp(score - expected_log_z[b])  # (P,)
            for r, t in enumerate(pos.tolist()):
                expected_marginals[b, t].index_add_(0, paths[:, r], weight)
    _, allowed_start, allowed_end = allowed_transitions(labels, scheme)
    first = mask & (mask.long().cumsum(1) == 1)  # (B, L) the first real position of each row
    last = mask & (mask.long().cumsum(1) == mask.sum(1, keepdim=True))
    for backend in BACKENDS:
        log_z = crf_log_partition(emissions, mask, T, s, e, backend=backend)
        torch.testing.assert_close(log_z.double(), expected_log_z, atol=1e-4, rtol=1e-5)
        marginals = crf_marginals(emissions, mask, T, s, e, backend=backend)
        torch.testing.assert_close(marginals.double(), expected_marginals, atol=1e-5, rtol=1e-4)
        assert (marginals[first][:, ~allowed_start] == 0).all(), backend
        assert (marginals[last][:, ~allowed_end] == 0).all(), backend


@SCHEME_PARAMS
@PROPERTY
@given(data=st.data())
def test_constrained_likelihood_gradients_are_finite(scheme, data):
    """log p(gold) through constrained parameters: finite, with finite gradients, 0 on every banned transition."""
    labels, emissions, mask, transitions, start, end = data.draw(crf_cases(scheme))
    allowed, allowed_start, allowed_end = allowed_transitions(labels, scheme)
    gold, _ = crf_viterbi(emissions, mask, *constrained(labels, scheme, transitions, start, end), backend="reference")
    unknown = torch.tensor(data.draw(st.lists(st.booleans(), min_size=gold.numel(), max_size=gold.numel())))
    gold = gold.masked_fill(unknown.view_as(gold) & mask, -100)  # partial annotation, marginalised
    for backend in BACKENDS:
        params = [x.clone().requires_grad_() for x in (emissions, transitions, start, end)]
        T, s, e = constrained(labels, scheme, *params[1:])
        log_likelihood = crf_log_likelihood(params[0], mask, T, s, e, gold, backend=backend)
        assert torch.isfinite(log_likelihood).all() and (log_likelihood <= 1e-4).all(), backend
        log_likelihood.sum().neg().backward()
        for name, p in zip(("emissions", "transitions", "start", "end"), params):
            assert torch.isfinite(p.grad).all(), (backend, name)
        zero = torch.zeros((), dtype=torch.float32)
        assert torch.equal(params[1].grad[~allowed], zero.expand(int((~allowed).sum())))
        assert torch.equal(params[2].grad[~allowed_start], zero.expand(int((~allowed_start).sum())))
        assert torch.equal(params[3].grad[~allowed_end], zero.expand(int((~allowed_end).sum())))


# ----------------------------------------------------------------------------------------------------------------
# The same on the Triton backend (a GPU, or the interpreter): one fixed case per scheme
# ----------------------------------------------------------------------------------------------------------------


def _triton_usable() -> bool:
    try:
        import bizoo.kernels.crf.triton_crf  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.skipif(not _triton_usable(), reason="Triton needs a CUDA device or TRITON_INTERPRET=1")
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@pytest.mark.parametrize("scheme", ["BIO", "IOBES", "BILOU"])
def test_constrained_triton_backend(scheme):
    labels = LABEL_SETS[scheme][0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(1)
    K, L = len(labels), 5
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 0]]).bool()
    emissions = torch.randn(len(mask), L, K, generator=g) * 3
    transitions, start, end = torch.randn(K, K, generator=g), torch.randn(K, generator=g), torch.randn(K, generator=g)
    args = (emissions, mask, *constrained(labels, scheme, transitions, start, end))
    on_device = [x.to(device) for x in args]
    tags, _ = crf_viterbi(*on_device, backend="triton")
    tags = tags.cpu()
    assert torch.equal(tags, crf_viterbi(*args, backend="reference")[0])
    for b in range(len(mask)):
        assert is_legal_path(tags[b][mask[b]].tolist(), labels, scheme)
    mm = crf_max_marginals(*on_device, backend="triton").cpu()
    assert torch.equal(mm.argmax(-1)[mask], tags[mask])
    torch.testing.assert_close(
        crf_log_partition(*on_device, backend="triton").cpu(), crf_log_partition(*args, backend="reference")
    )
