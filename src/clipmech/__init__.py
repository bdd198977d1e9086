"""clipmech: mechanistic interpretability of CLIP-style vision encoders, as a Snakemake pipeline.

Subpackages, by the kind of work:

- :mod:`.data`: the seeded Shapes synthesis, its shift splits and minimal pairs, dataset readers;
- :mod:`.models`: open_clip loading, the tower adapter, training of the small CLIPs, zero-shot prompts;
- :mod:`.hooks`: one vocabulary of hook sites for both towers (capture, replace, edit);
- :mod:`.stores`: resumable, checksummed zarr stores of activations and attention pools;
- :mod:`.analyses`: the shapes-paper track (selectivity, superposition, binding, Grad-CAM, t-SNE);
- :mod:`.decomposition`: the neuron-attention track on CLIP-ResNet;
- :mod:`.patching`: causal tracing, activation patching, concept units and interventions;
- :mod:`.sae`: top-k sparse autoencoders;
- :mod:`.miclip`: MiCLIP neuron encoders, their baselines and interventions;
- :mod:`.atlas`: the static neuron atlas;
- :mod:`.papers`: the source papers' reported numbers and the tables that set ours beside them;
- :mod:`.figures`: matplotlib figures;
- :mod:`.stages`: one module per workflow rule.

``docs/methods.md`` defines every analysis; docstrings cite its numbered sections.

Shape suffixes
--------------
Array and tensor names may end in their shape, one capital letter per axis in order
(``acts_NLTD`` is images x layers x tokens x width). Each letter means one thing everywhere:

====  =====================================================================================
N     images (in the text tower: the captions or prompts of a batch)
L     layers (blocks) of a tower
T     tokens of a sequence (queries, in attention); token 0 is the class / mean token
S     a second token axis: the keys of an attention, or the patches of a spatial map
D     residual width of a transformer (d_model)
d     width of one attention head (``Hd``: heads x head width)
H     attention heads
C     channels: of an image (RGB) or of a feature map (the neurons of the CLIP-ResNet attention pool)
E     width of the joint image-text embedding
U     units (layer x neuron) of a selectivity analysis
F     concepts: the 16 Shapes features (5 shapes, 6 colours, 5 positions), or a dataset's classes or words
K     selected items of a step: classes of a zero-shot task, kept pairs, top-k entries, targets
k     top-k pairs per class
P     prompts (text) scored against each image
Q     pairs: of features (superposition) or of neuron and head (flattened H x C)
A     atoms of a dictionary (the vocabulary's text embeddings)
M     components of a sparse (OMP) code
n     latents of a sparse autoencoder (``W_dec`` is D x n)
B     a batch of OMP targets or of SAE tokens, or a chunk of units, processed together
R     trials of the binding benchmark
Z     random draws (the null distribution of selectivity)
HW    the pair: height and width of an image, mask or upsampled map (``H`` alone is heads)
hw    the pair: height and width of a feature map or patch grid
2, 3  literal sizes (``xy_N2``, RGB ``images_NHW3``)
====  =====================================================================================
"""

__version__ = "0.1.0"
