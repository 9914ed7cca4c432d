"""Prompt engineering (PE): a causal LM that rewrites a user's prompt u into one the DiT renders better, r.

    data.py       (u, r) pairs: from an export's long/short captions, from reward-scored candidates; preference
                  pairs (u, chosen, rejected) from reward scores or Label Studio's pairwise template
    candidates.py render candidate rewrites with the frozen DiT, score them with reward models (training/rewards)
    guard.py      quoted text to be rendered survives rewriting exactly (check, repair, fall back)
    rewrite.py    the saved rewriter: load, rewrite (guarded), sample candidates
    sft.py, dpo.py  training with trl's SFTTrainer and DPOTrainer
    config.py     the rewriter's config, as validated data

Nothing here is imported by `import training`; each module imports torch, transformers or trl only when used.
"""
