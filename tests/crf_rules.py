"""The CRF tag schemes' rules, written from their definitions for the tests (an oracle independent of
``bizoo.kernels.crf.constraints``): which label may start a sentence, follow another, end a sentence.

BIO (IOB2): I-X continues an open chunk of type X (after B-X or I-X); anything may end a sentence. IOBES: as BIO for
I-X, and E-X closes a chunk (after B-X or I-X); an open chunk (B-X, I-X) must be continued, so a sentence ends on O,
E-X or S-X. BILOU: IOBES with L for E and U for S.
"""

RULES = {  # scheme -> (prefixes after which a chunk is open, prefixes that continue one, prefixes a sentence ends on)
    "BIO": (("B", "I"), ("I",), ("O", "B", "I")),
    "IOBES": (("B", "I"), ("I", "E"), ("O", "E", "S")),
    "BILOU": (("B", "I"), ("I", "L"), ("O", "L", "U")),
}


def scheme_rules(labels, scheme):
    """(may_start(tag), may_follow(prev, tag), may_end(tag)) on label names for ``scheme`` (BIO, IOBES or BILOU)."""
    inside, goes_on, closes = RULES[scheme]

    def parts(tag):
        return ("O", None) if tag == "O" else tuple(tag.split("-", 1))

    def may_start(tag):
        return parts(tag)[0] not in goes_on

    def may_follow(prev, tag):
        (p, pt), (c, ct) = parts(prev), parts(tag)
        if c in goes_on:  # continues a chunk: only after an open chunk of the same type
            return p in inside and pt == ct
        if scheme != "BIO" and p in inside:  # an open IOBES/BILOU chunk must be continued
            return False
        return True

    def may_end(tag):
        return parts(tag)[0] in closes

    return may_start, may_follow, may_end
