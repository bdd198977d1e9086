"""Hooks: one vocabulary of hook sites for both towers, after TransformerLens (methods.md Sec. 6).

:mod:`.sites` names every place an analysis reads or writes activations (``visual.blocks.3.hook_mlp_out``,
``text.blocks.1.hook_resid_post``, per-head ``attn.hook_result``, ``visual.attnpool.hook_alpha``),
resolves a name to a module of open_clip or timm, and captures, replaces or edits any set of sites in
one context manager that always removes its hooks; every capture in the package goes through it
(:mod:`.attnpool` captures a CLIP-ResNet's attention-pool tokens, attention and output for the
decomposition of methods.md Sec. 5). The facts about each tower (grid, prefix tokens,
width, heads, stride, attention pool) are in :mod:`clipmech.models.towers`.
"""
