"""Causal tracing, activation patching, concept selectivity and interventions (methods.md Sec. 8).

A *pair* is a clean input and its corrupted counterpart: a Shapes minimal pair (one object's colour,
shape or position changed, or two objects' colours swapped, with the caption changed to match) or
one input whose embeddings are zeroed or noised. A *component* is a slice of one hook site's
activation (:mod:`.components`); a *patched run* is the base run of a pair with a set of components
taken from its source run: denoising restores components of the clean run into the corrupted one,
noising puts components of the corrupted run into the clean one (:mod:`.engine`).

Metric m, for a run of the tower being traced, is the logit difference between the correct and the
foil caption: m = s (cos(f, t_correct) - cos(f, t_foil)) with s the model's logit scale. In the
vision tower f is the image embedding of the run and t_* the embeddings of the clean pair's caption
and foil; in the text tower the run's caption embedding plays t_correct, against the fixed clean
image embedding f and foil embedding t_foil. Recovery (:mod:`.measures`)

    R = (m_patched - m_corrupt) / (m_clean - m_corrupt),    Delta logit = m_patched - m_base,

with m_base the unpatched run the patch goes into (m_corrupt for denoising, m_clean for noising).
"""
