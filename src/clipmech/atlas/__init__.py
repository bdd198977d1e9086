"""The neuron atlas (methods.md Sec. 10): one static site per model, one page per unit.

Units: the vision MLP output channels of a ViT (``mlp``, methods.md Sec. 2), the attention-pool input
neurons of a CLIP-ResNet (``neuron``) and its neuron-head pairs (``pair``, Sec. 5), and the latents of
each top-k SAE (``sae``, Sec. 7). :mod:`.gather` computes what a page shows from arrays and tables
(pure functions), :mod:`.render` turns it into HTML with the standard library only, and :mod:`.site`
writes the site (thumbnails, pages, index, the shipped ``assets/atlas.js`` and ``atlas.css``)
atomically. Nothing in the site is fetched at view time.
"""
