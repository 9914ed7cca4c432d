"""Quoted text survives rewriting exactly: the text a user quotes is what the DiT's glyph encoder renders.

A rewrite keeps the prompt's quoted spans when it quotes exactly the same texts, as many times each (the quote
marks may change: “山水” -> "山水"; the text inside may not). A rewrite that added a quoted span would put text in
the image that the user never asked for, so it breaks the rule too. A broken rewrite is repaired when it has
as many wrong spans as missing ones (they were garbled: each is put back, in order) and otherwise replaced by
the user's own prompt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

STATUSES = ("ok", "repaired", "fallback")


def _spans(text: str) -> list[str]:
    from training.models.text_encoder import quoted_spans  # the DiT's own reading of what is to be rendered

    return quoted_spans(text)


def missing_spans(user: str, rewrite: str) -> list[str]:
    """The user's quoted spans that the rewrite lacks (as many times as they are lacking), in the user's order."""
    have = Counter(_spans(rewrite))
    out = []
    for s in _spans(user):
        if have[s]:
            have[s] -= 1
        else:
            out.append(s)
    return out


def keeps_quotes(user: str, rewrite: str) -> bool:
    """True when the rewrite quotes exactly the user's texts: none lost, none garbled, none added."""
    return Counter(_spans(user)) == Counter(_spans(rewrite))


@dataclass(frozen=True)
class Guarded:
    text: str  # what goes to the DiT
    status: str  # ok | repaired | fallback
    rewrite: str  # the rewriter's own output, before the guard


def _repair(user: str, rewrite: str) -> str | None:
    """Put each missing span in place of a span the user never quoted, in order; None when the counts differ."""
    from training.models.text_encoder import QUOTES

    missing = missing_spans(user, rewrite)
    budget = Counter(_spans(user))
    wrong = []  # (start, end) of the inner text of every span the rewrite should not have
    for m in QUOTES.finditer(rewrite):
        g = next(i for i in range(1, len(m.groups()) + 1) if m.group(i))
        if budget[m.group(g)]:
            budget[m.group(g)] -= 1
        else:
            wrong.append(m.span(g))
    if not missing or len(wrong) != len(missing):
        return None
    out, last = [], 0
    for (a, b), text in zip(wrong, missing):
        out += [rewrite[last:a], text]
        last = b
    fixed = "".join(out) + rewrite[last:]
    return fixed if keeps_quotes(user, fixed) else None


def guard(user: str, rewrite: str, mode: str = "repair") -> Guarded:
    """The rewrite if it keeps the quoted text; else repaired (mode "repair", when it can be) or the user's prompt."""
    if keeps_quotes(user, rewrite):
        return Guarded(rewrite, "ok", rewrite)
    if mode == "repair":
        fixed = _repair(user, rewrite)
        if fixed is not None:
            return Guarded(fixed, "repaired", rewrite)
    return Guarded(user, "fallback", rewrite)


def span_survival(users: list[str], rewrites: list[str]) -> dict:
    """Of all the users' quoted spans, how many each rewrite kept; and how many rewrites quote exactly right."""
    spans = kept = exact = 0
    for u, r in zip(users, rewrites, strict=True):
        n = len(_spans(u))
        spans += n
        kept += n - len(missing_spans(u, r))
        exact += keeps_quotes(u, r)
    return {"spans": spans, "kept": kept, "survival": kept / spans if spans else 1.0,
            "exact_prompts": exact, "prompts": len(users)}
