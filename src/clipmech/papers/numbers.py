"""The numbers the four source papers report for which the pipeline computes an analogue (methods.md Sec. 11).

Each :class:`PaperNumber` is one cell of a paper's table or one number of its text: the quantity, the
paper's model and dataset, the value as the paper prints it (a decimal string, empty where the paper gives
no number for that panel: then ``claim`` says what the paper states instead), its standard deviation where
printed, where it is quoted from, and the analogues: the selectors of our result tables that compute the
same quantity (:mod:`clipmech.papers.compare` reads them). Units are the paper's: MiCLIP Table 1 is a
fraction, every other accuracy, mIoU and Delta Acc is in percent (points).

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product


@dataclass(frozen=True)
class Paper:
    """A source paper: its title, and the models and data its numbers come from (for the report)."""

    title: str
    models: str
    data: str


@dataclass(frozen=True)
class PaperNumber:
    """One reported number (see the module docstring).

    ``analogues`` is a tuple of selectors, each a dict whose ``table`` names one of
    :data:`clipmech.papers.sources.TABLES` and whose other keys pick rows and a column of it.
    """

    paper: str
    table: str
    quantity: str
    model: str
    dataset: str
    value: str
    source: str
    analogues: tuple[dict, ...]
    sd: str = ""
    claim: str = ""
    note: str = field(default="")


PAPERS = {
    "shapes-superposition": Paper(
        "Do VLMs Have Bad Eyes? Diagnosing Compositional Failures via Mechanistic Interpretability (poster and "
        "paper excerpt)",
        "CLIP-ViT-L/14 (OpenAI)",
        "a toy Shapes dataset of 500 images; CIFAR-10",
    ),
    "neuron-attention": Paper(
        "Interpreting ResNet-based CLIP via Neuron-Attention Decomposition",
        "CLIP-RN50x16 (OpenAI); RN50x64 in its appendix",
        "ImageNet (1000 images for the statistics, validation for accuracy); PASCAL Context-59; Stanford Cars",
    ),
    "causal-tracing": Paper(
        "Mechanistic Interpretability of Vision-Language Models: Tracing Multimodal Concept Binding in CLIP and SigLIP",
        "CLIP-ViT-B/32 and SigLIP-SO400M",
        "50k image-text pairs from COCO and CC3M",
    ),
    "miclip": Paper(
        "MiCLIP: Learning to Interpret Representation in Vision Models",
        "ResNet-50 and ViT-B/16 (ImageNet-1k classifiers), CLIP ViT-B-16",
        "100,000 ImageNet-1k training images; ImageNet-1k validation",
    ),
}

_SHAPES = "CLIP-ViT-L/14"
_SUPERPOSITION = {"table": "superposition", "score": "S_ratio", "method": "pearson", "pair_type": "all"}
_SHAPES_NUMBERS = (
    PaperNumber(
        "shapes-superposition",
        "Poster: superposition vs embedding distance",
        "Pearson r of the superposition score S with the cluster-centre distance D over feature pairs",
        _SHAPES,
        "Shapes (500 images)",
        "",
        "poster, panel 'Higher degree of superposition => embeddings closer together'",
        ({**_SUPERPOSITION, "separability": "D_full"},),
        claim="feature pairs with higher superposition have embeddings closer together (r < 0)",
    ),
    PaperNumber(
        "shapes-superposition",
        "Poster: superposition vs misclassification",
        "Pearson r of the superposition score S with the misclassification rate M over feature pairs",
        _SHAPES,
        "Shapes (500 images)",
        "",
        "poster, panel 'Higher degree of superposition => higher rate of misclassification'",
        ({**_SUPERPOSITION, "separability": "M_full"},),
        claim="feature pairs with higher superposition are misclassified more often (r > 0)",
    ),
)

_RN16, _RN64, _IMAGENET = "CLIP-RN50x16", "CLIP-RN50x64", "ImageNet validation"
_BASELINE = ({"table": "ablation", "column": "model_accuracy"},)
_PASCAL = "PASCAL Context-59"


def _segmentation(method: str) -> tuple[dict, ...]:
    """The PASCAL Context-59 mIoU of a method, and its Shapes analogue (objects-only scoring)."""
    return (
        {"table": "pascal", "method": method},
        {"table": "segmentation", "method": method, "scoring": "objects_only"},
    )


_NEURON_ATTENTION_NUMBERS = (
    PaperNumber(
        "neuron-attention",
        "Table 1",
        "zero-shot accuracy of the unablated model (%)",
        _RN16,
        _IMAGENET,
        "70.7",
        "Table 1, row (Baseline)",
        _BASELINE,
    ),
    PaperNumber(
        "neuron-attention",
        "Table 5 (A.1)",
        "zero-shot accuracy of the unablated model (%)",
        _RN64,
        _IMAGENET,
        "73.9",
        "Appendix A.1, Table 5, row (Baseline)",
        _BASELINE,
    ),
    PaperNumber(
        "neuron-attention",
        "Figure 1",
        "accuracy drop keeping the top 20 % of neuron-head pairs, the rest mean-ablated (%)",
        _RN16,
        _IMAGENET,
        "5",
        "Abstract and Sec. 1: 'mean-ablating a fixed bottom 80% of neuron-head pairs decreases ImageNet "
        "classification accuracy by only 5%'",
        ({"table": "ablation", "level": "pair", "fraction": 0.2, "column": "drop"},),
        note="the paper does not say whether the 5 % is relative or in points; ours is in points",
    ),
    PaperNumber(
        "neuron-attention",
        "Figure 1",
        "accuracy drop keeping the top 20 % of neurons, the rest mean-ablated (%)",
        _RN16,
        _IMAGENET,
        "",
        "Sec. 4.1 and Figure 1 (curves only; the number in the text is lost in our copy)",
        ({"table": "ablation", "level": "neuron", "fraction": 0.2, "column": "drop"},),
        claim="neurons are less sparse than neuron-head pairs: keeping the same share drops accuracy more",
    ),
    PaperNumber(
        "neuron-attention",
        "Table 3",
        "training-free segmentation mIoU, MaskCLIP (%)",
        _RN16,
        _PASCAL,
        "22.8",
        "Table 3, row MaskCLIP",
        _segmentation("maskclip"),
    ),
    PaperNumber(
        "neuron-attention",
        "Table 3",
        "training-free segmentation mIoU, neuron-head pairs (%)",
        _RN16,
        _PASCAL,
        "26.2",
        "Table 3, row Ours",
        _segmentation("pairs"),
    ),
    PaperNumber(
        "neuron-attention",
        "Table 4",
        "training-free segmentation mIoU, neuron maps only (%)",
        _RN16,
        _PASCAL,
        "16.5",
        "Table 4, row Neuron maps only",
        _segmentation("neurons"),
    ),
    PaperNumber(
        "neuron-attention",
        "Table 4",
        "training-free segmentation mIoU, head maps only (%)",
        _RN16,
        _PASCAL,
        "24.7",
        "Table 4, row Head maps only",
        _segmentation("heads"),
    ),
    PaperNumber(
        "neuron-attention",
        "Table 4",
        "training-free segmentation mIoU, both (multiplied) (%)",
        _RN16,
        _PASCAL,
        "26.2",
        "Table 4, row Both (multiplied)",
        _segmentation("pairs"),
    ),
)

_TRACING, _COCO = "CLIP-ViT-B/32, SigLIP-SO400M", "COCO and CC3M (50k pairs)"
_CAUSAL_TRACING_NUMBERS = tuple(
    PaperNumber(
        "causal-tracing",
        "Sec. 4.1",
        f"concept-selective features for {what} (count)",
        _TRACING,
        _COCO,
        value,
        f"Sec. 4.1: '{value} SAE features with high selectivity for {what}'",
        ({"table": "auroc", "concept_type": concept_type, "column": "n_selective"},),
        note="the paper counts SAE features; ours counts units (neurons, heads) of both towers with AUROC >= "
        "the threshold, summed over concepts of the type",
    )
    for value, what, concept_type in (
        ("1,842", "objects", "shape"),
        ("1,203", "colors", "colour"),
        ("876", "spatial relations", "position"),
    )
) + (
    PaperNumber(
        "causal-tracing",
        "Sec. 4.1",
        "share of concept-selective features polysemantic across modalities (%)",
        _TRACING,
        _COCO,
        "14",
        "Sec. 4.1: 'Only 14% of these features are polysemantic across modalities'",
        ({"table": "auroc", "column": "modality_invariant_share"},),
        note="ours: the share of concepts with selective units in both towers",
    ),
    PaperNumber(
        "causal-tracing",
        "Sec. 4.3",
        "change in cosine to the target concept, top-50 concept-selective neurons amplified",
        _TRACING,
        _COCO,
        "0.18",
        "Sec. 4.3: 'Intervening on top 50 concept-selective neurons increases the cosine similarity for the "
        "target concept by 0.18 on average'",
        ({"table": "interventions", "scale": 2.0, "column": "d_cos_target"},),
        note="the paper does not give its scale factor; ours scales the units by 2",
    ),
    PaperNumber(
        "causal-tracing",
        "Sec. 4.3",
        "change in cosine to unrelated concepts, top-50 concept-selective neurons amplified",
        _TRACING,
        _COCO,
        "",
        "Sec. 4.3",
        ({"table": "interventions", "scale": 2.0, "column": "d_cos_unrelated"},),
        claim="similarity to unrelated concepts decreases",
    ),
    PaperNumber(
        "causal-tracing",
        "Sec. 3.4",
        "circuit sparsity: fraction of components needed to recover 80 % of the clean performance",
        _TRACING,
        _COCO,
        "",
        "Sec. 3.4 (defined; no value reported) and Sec. 5",
        ({"table": "circuit", "order": "greedy", "column": "fraction_needed"},),
        claim="concept binding relies on a small set of components (sparse circuits)",
    ),
)

_MODELS = ("ResNet-50", "ViT-B/16")
_MICLIP_METHODS = {"Act-Values": "act_values", "Network Dissection": "netdissect", "CLIP-dissect": "clip_dissect"}
_MICLIP_METHODS["MiCLIP"] = "miclip"


def _description(method: str, model: str, vocabulary: str, column: str, value: str) -> PaperNumber:
    metric = "accuracy (fraction)" if column == "accuracy" else "CLIP score"
    return PaperNumber(
        "miclip",
        "Table 1",
        f"description {metric} of last-layer neurons, {method}, concepts {vocabulary}",
        model,
        "ImageNet-1k",
        value,
        f"Table 1, {vocabulary}, {method}, {model} {'Acc.' if column == 'accuracy' else 'CLIP'}",
        (
            {
                "table": "description_accuracy",
                "method": _MICLIP_METHODS[method],
                "column": f"{column}_mean" if vocabulary == "ImageNet-1k" else "clip_score_words_mean",
            },
        ),
        note="ours: units of the configured sites against their Algorithm 1 top feature (the 16 Shapes "
        "concepts; Common-k: over miclip.n_words words)",
    )


# Table 1: (method, vocabulary) -> Acc. and CLIP per model (ResNet-50, ViT-B/16); "-" cells left out.
_TABLE1 = {
    ("CLIP-dissect", "Common-3k"): (None, "0.7456", None, "0.7182"),
    ("MiCLIP", "Common-3k"): (None, "0.7624", None, "0.7618"),
    ("CLIP-dissect", "Common-10k"): (None, "0.7656", None, "0.7342"),
    ("MiCLIP", "Common-10k"): (None, "0.7885", None, "0.7786"),
    ("CLIP-dissect", "Common-20k"): (None, "0.7900", None, "0.7563"),
    ("MiCLIP", "Common-20k"): (None, "0.8145", None, "0.8138"),
    ("Act-Values", "ImageNet-1k"): ("0.9940", "0.9995", "0.9940", "0.9989"),
    ("CLIP-dissect", "ImageNet-1k"): ("0.9560", "0.9902", "0.9500", "0.9881"),
    ("MiCLIP", "ImageNet-1k"): ("1.0000", "1.0000", "1.0000", "1.0000"),
}
_MICLIP_TABLE1 = tuple(
    _description(method, model, vocabulary, column, cells[2 * m + c])
    for (method, vocabulary), cells in _TABLE1.items()
    for m, model in enumerate(_MODELS)
    for c, column in enumerate(("accuracy", "clip_score_shapes"))
    if cells[2 * m + c] is not None
)

_DELTA_MODELS = ("ResNet-50", "ViT-B/16", "CLIP ViT-B-16")
# Table 2 (a) neurons, (b) SAE features: per method, Enhancement x3 models then Removal x3 models, (mean, sd).
_TABLE2 = {
    "neurons": {
        "Act-Values": ("2.27 0.03", "-0.19 0.01", "-8.05 0.02", "-8.98 0.08", "-1.43 0.01", "-23.30 0.00"),
        "Network Dissection": ("0.78 0.02", "0.35 0.01", "0.23 0.02", "-2.95 0.15", "-0.37 0.03", "-0.88 0.05"),
        "CLIP-dissect": ("3.05 0.18", "0.19 0.03", "-0.04 0.03", "-12.31 0.67", "-0.04 0.02", "-1.16 0.14"),
        "MiCLIP": ("5.32 0.03", "0.18 0.01", "1.10 0.05", "-17.24 0.05", "-0.04 0.02", "-1.50 0.08"),
    },
    "sae": {
        "Act-Values": ("4.34 0.00", "3.68 0.02", "0.43 0.08", "-11.98 0.00", "-22.77 0.11", "-15.94 0.06"),
        "Network Dissection": ("0.02 0.04", "1.12 0.05", "0.50 0.06", "-0.08 0.05", "-4.03 0.13", "-1.99 0.05"),
        "CLIP-dissect": ("2.27 0.09", "5.04 0.05", "4.85 0.03", "-7.30 0.03", "-27.78 0.09", "-11.05 0.12"),
        "MiCLIP": ("3.89 0.03", "5.57 0.02", "5.88 0.03", "-10.99 0.02", "-32.04 0.20", "-17.70 0.02"),
    },
}
# Table 4 (a), ImageNet-1k: the loss variants, same layout.
_TABLE4 = {
    "neurons": {
        "Input-Only": ("3.71 0.02", "0.12 0.07", "0.31 1.02", "-12.63 0.11", "-0.18 0.06", "-4.09 2.51"),
        "Output-Only": ("5.71 0.01", "0.21 0.03", "0.44 0.41", "-17.98 0.04", "-0.26 0.01", "-1.17 0.03"),
        "MiCLIP": ("5.32 0.03", "0.18 0.01", "1.10 0.05", "-17.24 0.05", "-0.04 0.02", "-1.50 0.08"),
    },
    "sae": {
        "Input-Only": ("2.52 0.05", "4.47 0.88", "5.49 0.04", "-8.11 0.05", "-24.29 5.97", "-15.25 0.14"),
        "Output-Only": ("4.05 0.01", "5.69 0.03", "5.32 0.03", "-11.17 0.01", "-32.79 0.04", "-16.59 0.08"),
        "MiCLIP": ("3.89 0.03", "5.57 0.02", "5.88 0.03", "-10.99 0.02", "-32.04 0.20", "-17.70 0.02"),
    },
}
_LOSSES = {"Input-Only": "input", "Output-Only": "output", "MiCLIP": "both"}
_EFFECTS = (("Enhancement", 2.0), ("Removal", 0.0))
_PANELS = {"neurons": ("(a) Intervention on neurons", "neurons"), "sae": ("(b) Intervention on SAE features", "SAE")}


def _delta(table: str, kind: str, method: str, e: int, m: int, cell: str) -> PaperNumber:
    effect, beta = _EFFECTS[e]
    value, sd = cell.split()
    panel, units = _PANELS[kind]
    if table == "Table 2":
        selector = {"table": "delta_acc", "method": _MICLIP_METHODS[method], "intervention": "scale", "beta": beta}
        source = f"Table 2 {panel}, {method}, {effect}, {_DELTA_MODELS[m]}"
    else:
        selector = {"table": "miclip_ablation", "loss": _LOSSES[method], "column": f"delta_scale_{beta:g}"}
        source = f"Table 4 (a) ImageNet-1k, {units}, {method}, {effect}, {_DELTA_MODELS[m]}"
    return PaperNumber(
        "miclip",
        table,
        f"Delta Acc (%) of {effect.lower()} (x{beta:g}) of the top-5 {units} per concept, {method}",
        _DELTA_MODELS[m],
        "ImageNet-1k",
        value,
        source,
        ({**selector, "unit_kind": kind},),
        sd=sd,
        note="ours: mean over the Shapes concepts of the configured unit set, mean and sd over seeds",
    )


_MICLIP_DELTAS = tuple(
    _delta(name, kind, method, e, m, cells[3 * e + m])
    for name, layout in (("Table 2", _TABLE2), ("Table 4", _TABLE4))
    for kind, rows in layout.items()
    for method, cells in rows.items()
    for e, m in product(range(2), range(3))
)

#: Every quoted number, by paper in :data:`PAPERS` order.
NUMBERS: tuple[PaperNumber, ...] = (
    _SHAPES_NUMBERS + _NEURON_ATTENTION_NUMBERS + _CAUSAL_TRACING_NUMBERS + _MICLIP_TABLE1 + _MICLIP_DELTAS
)


def numbers_of(paper: str) -> tuple[PaperNumber, ...]:
    """The numbers of one paper.

    Raises
    ------
    ValueError
        If ``paper`` is not a key of :data:`PAPERS` (the message lists them).
    """
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of: {', '.join(PAPERS)}")
    return tuple(number for number in NUMBERS if number.paper == paper)
