"""Small random stand-ins shared by several test modules."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import timm
import torch
from huggingface_hub.file_download import repo_folder_name
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from torch import nn

from clipmech.data import natural
from clipmech.decomposition import pool

#: Names of the object counts 1..5: the class folders of :func:`shapes_as_photographs`.
COUNTS = ("one", "two", "three", "four", "five")


def random_attnpool_weights(
    rng: np.random.Generator, n_tokens: int, width: int, embed_dim: int, n_heads: int
) -> pool.AttnPoolWeights:
    """Attention-pool weights with standard-normal entries: T x C positional embedding, C x C
    q/k/v projections, E x C output projection."""
    return pool.AttnPoolWeights(
        positional_embedding=rng.standard_normal((n_tokens, width)),
        q_weight=rng.standard_normal((width, width)),
        q_bias=rng.standard_normal(width),
        k_weight=rng.standard_normal((width, width)),
        k_bias=rng.standard_normal(width),
        v_weight=rng.standard_normal((width, width)),
        v_bias=rng.standard_normal(width),
        c_weight=rng.standard_normal((embed_dim, width)),
        c_bias=rng.standard_normal(embed_dim),
        n_heads=n_heads,
    )


def die_on_region_write(monkeypatch, n: int) -> None:
    """Make the ``n``-th region write of ``xarray.Dataset.to_zarr`` raise KeyboardInterrupt, as a
    job killed mid-extraction would stop (the earlier writes complete)."""
    import xarray as xr

    original = xr.Dataset.to_zarr
    calls = {"n": 0}

    def dying_to_zarr(self, *args, **kwargs):
        if kwargs.get("region") is not None:
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("killed mid-extraction")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", dying_to_zarr)


def record_region_writes(monkeypatch) -> list:
    """Restore ``xarray.Dataset.to_zarr`` (after :func:`die_on_region_write`) and record the
    ``region`` of every call in the returned list."""
    import xarray as xr

    monkeypatch.undo()
    original = xr.Dataset.to_zarr
    written: list = []

    def recording_to_zarr(self, *args, **kwargs):
        written.append(kwargs.get("region"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", recording_to_zarr)
    return written


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max_n ||a_n - b_n|| / ||b_n|| over the rows of two arrays of the same shape."""
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


def no_hooks(model) -> bool:
    """True when no module of ``model`` holds a forward hook or forward pre-hook."""
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class TimmTrunkModel(nn.Module):
    """A stand-in for open_clip's TimmModel tower: ``model.visual.trunk`` is a small timm ViT (2 blocks, 64 px;
    fused attention as timm picks it); ``timm_kwargs`` go to ``timm.create_model``."""

    def __init__(self, **timm_kwargs):
        super().__init__()
        self.visual = nn.Module()
        self.visual.trunk = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2, img_size=64, **timm_kwargs
        )

    def encode_image(self, images):
        return self.visual.trunk(images)


def seeded_double(build):
    """``build()`` after ``torch.manual_seed(0)``, in eval mode and float64."""
    torch.manual_seed(0)
    return build().eval().double()


def attention_outputs(info):
    """Forward hooks on every block's attention module of a tower (``clipmech.models.towers.Tower``).

    Returns the dict that fills with layer -> the module's output (N, T, D), and the hook handles to remove.
    """
    outputs, handles = {}, []
    for layer, block in enumerate(info.blocks):

        def hook(module, args, output, layer=layer):
            outputs[layer] = output[0] if isinstance(output, tuple) else output

        handles.append(block.attn.register_forward_hook(hook))
    return outputs, handles


def torch_attnpool_attention(attnpool, x_TNC):
    """The attention of an open_clip ``AttentionPool2d`` as torch's own ``multi_head_attention_forward``
    computes it, the second implementation the recomputed alpha is checked against: (N, H, T, T)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        _, w_NHTT = F.multi_head_attention_forward(
            query=x_TNC,
            key=x_TNC,
            value=x_TNC,
            embed_dim_to_check=x_TNC.shape[-1],
            num_heads=attnpool.num_heads,
            q_proj_weight=attnpool.q_proj.weight,
            k_proj_weight=attnpool.k_proj.weight,
            v_proj_weight=attnpool.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=attnpool.c_proj.weight,
            out_proj_bias=attnpool.c_proj.bias,
            use_separate_proj_weight=True,
            training=False,
            need_weights=True,
            average_attn_weights=False,
        )
    return w_NHTT


#: Clean and corrupted captions of the same token length (the text tower's minimal pairs in the patching tests).
CAPTION_PAIRS = (
    ("a red circle above a blue square", "a blue circle above a red square"),
    ("one small yellow star", "one large yellow star"),
    ("a small red square", "a small blue square"),
)


def vision_pairs(model, n_pairs: int, seed: int, cells: int | None = None, amplitude: float = 1.0):
    """Random clean and corrupted images of a model's image size (its dtype) and the vision metric of
    ``clipmech.patching.tracing`` against random correct / foil embeddings: (clean, corrupt, metric).

    Pixels are ``amplitude`` x standard normal, drawn per pixel or, with ``cells``, per cell of a
    cells x cells grid (blocky images: a random-init CLIP-ResNet averages per-pixel noise away).
    """
    import torch.nn.functional as F

    from clipmech.models.towers import tower
    from clipmech.patching.tracing import vision_metric

    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    size = tower(model, "visual").image_size
    drawn = torch.randn(2 * n_pairs, 3, *((cells, cells) if cells else size), generator=generator, dtype=dtype)
    clean, corrupt = (amplitude * F.interpolate(drawn, size=size, mode="nearest")).split(n_pairs)
    correct, foil = torch.randn(2, n_pairs, model.text_projection.shape[1], generator=generator, dtype=dtype)
    return clean, corrupt, vision_metric(correct, foil, float(model.logit_scale.detach().exp()))


def text_pairs(model, architecture: str, n_pairs: int, seed: int):
    """Token ids of the first ``n_pairs`` of ``CAPTION_PAIRS`` and the text metric of
    ``clipmech.patching.tracing`` against random image / foil embeddings: (clean, corrupt, metric)."""
    import open_clip

    from clipmech.patching.tracing import text_metric

    tokenizer = open_clip.get_tokenizer(architecture)
    clean = tokenizer([c for c, _ in CAPTION_PAIRS[:n_pairs]])
    corrupt = tokenizer([c for _, c in CAPTION_PAIRS[:n_pairs]])
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    image, foil = torch.randn(2, n_pairs, model.text_projection.shape[1], generator=generator, dtype=dtype)
    return clean, corrupt, text_metric(image, foil, float(model.logit_scale.detach().exp()))


def write_site_store(path, acts_NTD: np.ndarray, site: str, batch_size: int, n_prefix_tokens: int = 1):
    """Publish an activation store holding one site's tokens (float16, one chunk per ``batch_size``
    images) through :mod:`clipmech.stores.base`, as extraction writes it; the MLP-output variables
    are left out (no reductions, no tokens) and the embeddings are zeros. Returns the store's path."""
    import xarray as xr

    from clipmech.stores import base
    from clipmech.stores.activation_extraction import StoreProvenance, store_template
    from clipmech.stores.activations import site_variable

    tower_name, _, layer, hook = site.split(".", 3)
    var = site_variable(tower_name, hook)
    n_images, n_tokens, width = acts_NTD.shape
    prov = StoreProvenance(
        model="toy",
        architecture="toy",
        weights="random-init",
        preprocess="none",
        dataset="toy",
        dataset_sha256="none",
        layers=(),
        reductions=(),
        save_tokens=False,
        batch_size=batch_size,
        clipmech_version="toy",
        open_clip_version="toy",
        torch_version="toy",
        sites=(site,),
        code="toy",
        precision="fp32",
    )
    layout = {"n_prefix_tokens": n_prefix_tokens, "grid_rows": 1, "grid_cols": n_tokens - n_prefix_tokens}
    extras = {var: ([int(layer)], n_tokens, width)}
    base.begin_store(
        path, prov, lambda: store_template(n_images, (), n_tokens, width, 1, batch_size, prov, layout, extras)
    )
    dims = ("image", f"{var}_layer", f"{var}_token", f"{var}_unit")
    for first in range(0, n_images, batch_size):
        last = min(first + batch_size, n_images)
        batch = xr.Dataset(
            {
                var: (dims, acts_NTD[first:last, None].astype(np.float16)),
                "embedding": (("image", "embed"), np.zeros((last - first, 1), dtype=np.float32)),
            }
        )
        base.write_batch(path, batch, first, last, "toy", {var: site, "embedding": "zeros"})
    return base.publish_store(path, "activation store")


def planted_dictionary(
    rng: np.random.Generator, n_samples: int, d: int, n_atoms: int, k: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Samples x = sum of k random atoms of a unit-norm dictionary with coefficients in [1, 2], plus
    Gaussian noise of standard deviation ``noise`` per dimension, plus a fixed offset.

    Returns
    -------
    x_ND : numpy.ndarray, float32
    atoms_AD : numpy.ndarray, float32, unit-norm rows
    """
    atoms_AD = rng.standard_normal((n_atoms, d))
    atoms_AD /= np.linalg.norm(atoms_AD, axis=1, keepdims=True)
    support_NK = np.argsort(rng.random((n_samples, n_atoms)), axis=1)[:, :k]
    codes_NK = rng.uniform(1.0, 2.0, size=(n_samples, k))
    x_ND = np.einsum("nk,nkd->nd", codes_NK, atoms_AD[support_NK])
    x_ND += noise * rng.standard_normal((n_samples, d)) + rng.standard_normal(d)
    return x_ND.astype(np.float32), atoms_AD.astype(np.float32)


# --- local copies of CIFAR-10 and PASCAL Context in their own layouts ---------------------------------------


#: The ten CIFAR-10 class names, in label order (its batches.meta).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar10(root, monkeypatch, rows: int = 4, test_rows: int = 6):
    """A CIFAR-10 copy in the python format torchvision reads, under ``root/cifar-10-batches-py/``: five training
    batches of ``rows`` images and a test batch of ``test_rows`` (pickled dicts: uint8 ``data`` rows of 3 x 32 x 32
    channel-first random pixels, ``labels``, ``filenames``) and ``batches.meta``. torchvision's md5 table and the
    split sizes the dataset kind checks (``natural.CIFAR10_SPLIT_SIZES``) are pointed at it with ``monkeypatch``.
    Returns ``root``."""
    import hashlib
    import pickle

    from torchvision.datasets import CIFAR10

    from clipmech.data import natural

    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {**{f"data_batch_{i}": rows for i in range(1, 6)}, "test_batch": test_rows}
    for name, n in sizes.items():
        batch = {
            "batch_label": name,
            "labels": rng.integers(0, 10, size=n).tolist(),
            "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_cases_per_batch": rows, "num_vis": 3072}, fh)

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    monkeypatch.setattr(natural, "CIFAR10_SPLIT_SIZES", {"train": 5 * rows, "test": test_rows})
    return root


def fake_pascal_context(root, names, size=(90, 120), classes=(0, 5, 13, 59)):
    """A PASCAL Context copy in mmseg's layout under ``root``: for each name a random RGB JPEG of ``size``
    (height, width) and a label PNG whose values are drawn from ``classes`` (0 background, 1..59 the Context-59
    classes), and ``ImageSets/SegmentationContext/val.txt`` listing the names. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClassContext").mkdir()
    (root / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        mask = rng.choice(np.asarray(classes, dtype=np.uint8), size=size)
        Image.fromarray(mask).save(root / "SegmentationClassContext" / f"{name}.png")
    (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(names) + "\n")
    return root


def natural_stand_in(kind, labels=None, captions=None, categories=None, class_names=()):
    """A natural-image dataset with the attributes concept_matrix and the concept texts read (manifest, classes)."""
    n = len(labels if labels is not None else captions)
    manifest = pd.DataFrame(
        {
            "index": np.arange(n, dtype=np.int64),
            "label": np.asarray(labels if labels is not None else [-1] * n, dtype=np.int64),
            "captions": captions if captions is not None else [[] for _ in range(n)],
            "categories": categories if categories is not None else [[] for _ in range(n)],
        }
    )
    classes = pd.DataFrame(
        {"index": np.arange(len(class_names), dtype=np.int64), "class_id": list(class_names), "name": list(class_names)}
    )
    return SimpleNamespace(spec={"kind": kind}, manifest=manifest, classes=classes, n_images=n)


def shapes_as_photographs(data, raw, tmp, caption) -> dict:
    """A Shapes dataset's images as PNGs in one folder per object count (``raw/photos/<count> objects``) and
    behind a captions file (``raw/captions.tsv``, image i captioned ``caption(i, its object count)``), indexed
    as an imagefolder and as a captions dataset: ``{"imagefolder": tmp/imagefolder/data, "captions": ...}``."""
    counts = data.objects.groupby("image_id")["n_objects"].first().to_numpy()
    rows = []
    for i, (image, count) in enumerate(zip(data.images, counts, strict=True)):
        folder = raw / "photos" / f"{COUNTS[count - 1]} objects"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image)).save(folder / f"{i:03d}.png")
        rows.append({"filepath": f"photos/{folder.name}/{i:03d}.png", "title": caption(i, count)})
    pd.DataFrame(rows).to_csv(raw / "captions.tsv", sep="\t", index=False)
    out = {}
    for kind, spec in (
        ("imagefolder", {"kind": "imagefolder", "root": str(raw / "photos")}),
        ("captions", {"kind": "captions", "path": str(raw / "captions.tsv")}),
    ):
        out[kind] = tmp / kind / "data"
        natural.write_natural_dataset(out[kind], spec)
    return out


#: The special tokens of SigLIP's T5 SentencePiece vocabulary, ids 0, 1, 2 as in T5's.
T5_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
#: SigLIP pads with ``</s>`` (big_vision's ``pad_value=1``; open_clip's ``SigLipTokenizer``, which wrote the
#: Hub's files, sets ``pad_token_id = 1``), so pad and eos are the same token.
SIGLIP_SPECIAL_TOKENS = {"eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}
#: The commit that :func:`cache_siglip_tokenizer` files its snapshot under (``refs/main`` points at it).
STAND_IN_REVISION = "5191e1f0c0de5191e1f0c0de5191e1f0c0de5191"


def cache_siglip_tokenizer(cache: Path, architecture: str, captions: Sequence[str]) -> Tokenizer:
    """Write a stand-in for an open_clip SigLIP architecture's Hugging Face tokenizer into the Hub cache ``cache``.

    The real repository (``text_cfg.hf_tokenizer_name``, ``timm/ViT-B-16-SigLIP`` for the SigLIP 1 models)
    holds SigLIP's 32,000-piece T5 SentencePiece vocabulary as open_clip's ``SigLipTokenizer.save_pretrained``
    wrote it: ``spiece.model``, ``tokenizer.json``, ``tokenizer_config.json`` (``T5Tokenizer``, no extra ids,
    pad = eos = ``</s>``) and ``special_tokens_map.json``. transformers 5 builds its ``T5Tokenizer`` from
    ``tokenizer.json`` when there is one, so the stand-in writes the three JSON files (``spiece.model`` is
    a SentencePiece protobuf, which only the ``sentencepiece`` package writes). They go where an online
    ``AutoTokenizer.from_pretrained`` run leaves them: ``models--timm--ViT-B-16-SigLIP/blobs/<git blob sha1>``,
    linked from ``snapshots/<rev>/``, ``refs/main`` naming ``<rev>``, and ``.no_exist/<rev>/config.json``
    (the repository has no transformers model config; AutoTokenizer needs its absence recorded offline).

    The vocabulary is a unigram language model fitted to ``captions`` after the architecture's own text
    cleaning (``tokenizer_kwargs.clean``, SigLIP: lowercase, no punctuation): ``<pad>``, ``</s>``, ``<unk>``
    (ids 0-2, T5's layout, which transformers' ``T5Tokenizer`` assumes for ``<unk>``), then every word as one
    piece ``"\u2581word"``, then every character, each scored by the log of its relative frequency. (The
    ``tokenizers`` Unigram trainer yields near-character pieces on a few captions: its seed pieces are
    substrings seen before several different characters, which a whole word followed by its word boundary
    never is.) Words of the captions are one token each; other words split into characters, unknown
    characters to ``<unk>``.

    Returns
    -------
    tokenizers.Tokenizer
        The stand-in as written to ``tokenizer.json`` (for expected ids: ``encode(cleaned text).ids``
        ends with ``</s>``).

    Raises
    ------
    ValueError
        If the architecture names no Hugging Face tokenizer, or the stand-in's vocabulary would not fit
        the text tower's token embedding (``text_cfg.vocab_size``).
    """
    text_cfg = open_clip.get_model_config(architecture)["text_cfg"]
    if "hf_tokenizer_name" not in text_cfg:
        raise ValueError(f"{architecture} has open_clip's own tokenizer (no text_cfg.hf_tokenizer_name)")
    clean = open_clip.tokenizer.get_clean_fn(text_cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace"))
    words = Counter(word for caption in captions for word in clean(caption).split())
    characters = Counter(character for word in words.elements() for character in word)
    characters["\u2581"] = words.total()
    counts = {f"\u2581{word}": n for word, n in sorted(words.items())} | dict(sorted(characters.items()))
    total = sum(counts.values())
    vocab = [(token, 0.0) for token in T5_SPECIAL_TOKENS]
    vocab += [(piece, math.log(n / total)) for piece, n in counts.items()]
    if len(vocab) > text_cfg["vocab_size"]:
        raise ValueError(f"a stand-in of {len(vocab)} pieces does not fit {architecture}'s {text_cfg['vocab_size']}")

    # T5's pipeline (transformers' T5Tokenizer): words, each with a leading U+2581, then "</s>" appended.
    stand_in = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    stand_in.add_special_tokens(list(T5_SPECIAL_TOKENS))
    metaspace = {"replacement": "\u2581", "prepend_scheme": "always", "split": True}
    stand_in.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(**metaspace)]
    )
    stand_in.decoder = decoders.Metaspace(**metaspace)
    stand_in.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    config = {
        "tokenizer_class": "T5Tokenizer",
        "extra_ids": 0,
        "additional_special_tokens": [],
        **SIGLIP_SPECIAL_TOKENS,
    }
    files = {
        "tokenizer.json": stand_in.to_str().encode(),
        "tokenizer_config.json": json.dumps(config, indent=2).encode(),
        "special_tokens_map.json": json.dumps(SIGLIP_SPECIAL_TOKENS, indent=2).encode(),
    }

    repo = Path(cache) / repo_folder_name(repo_id=text_cfg["hf_tokenizer_name"], repo_type="model")
    snapshot = repo / "snapshots" / STAND_IN_REVISION
    for folder in (repo / "blobs", snapshot, repo / "refs", repo / ".no_exist" / STAND_IN_REVISION):
        folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # the Hub's ETag of a git file
        (repo / "blobs" / blob).write_bytes(content)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (repo / "refs" / "main").write_text(STAND_IN_REVISION)
    (repo / ".no_exist" / STAND_IN_REVISION / "config.json").touch()
    return stand_in


#: The COCO categories of :func:`paper_copies` that its captions name (the rest are made up to reach 80).
COCO_NAMED = ["cat", "dog", "bed", "person", "car", "pizza"]
#: Its captions, one image each, every one naming a COCO category (the object foils swap one).
COCO_CAPTIONS = ["A cat on a bed.", "A dog next to a car.", "A person eating pizza.", "A dog on a bed."]


def paper_copies(root: Path, monkeypatch=None, n_imagenet: int = 2) -> dict:
    """Tiny copies of the natural-image datasets of config/paper.yaml under ``root``, in the layouts its comments
    name: ImageNet as ``imagenet/{val,train}/<wnid>/`` (1000 made-up WordNet ids, ``n_imagenet`` images a split
    in its first ``n_imagenet`` classes), PASCAL Context in mmseg's layout (:func:`fake_pascal_context`, 3
    images), CIFAR-10 (:func:`fake_cifar10`, which points torchvision and the split sizes at it with
    ``monkeypatch``; 6 test images; left out without ``monkeypatch``: torchvision checks the files' md5s, which a
    process of its own cannot be pointed past) and COCO as ``coco/annotations/captions_val2017.json`` and
    ``instances_val2017.json`` (80 categories, :data:`COCO_NAMED` first) with the 4 images of
    :data:`COCO_CAPTIONS` in ``coco/val2017/``. Returns the config override that locates them:
    ``{"datasets": {name: {key: path}}}``."""
    rng = np.random.default_rng(0)

    def jpeg(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(path, format="JPEG")

    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
    for split in ("val", "train"):
        for wnid in wnids:
            (root / "imagenet" / split / wnid).mkdir(parents=True)
        for k in range(n_imagenet):
            jpeg(root / "imagenet" / split / wnids[k] / f"{split}_{k}.JPEG")
    fake_pascal_context(root / "VOC2010", ["2008_000001", "2008_000002", "2008_000003"])
    if monkeypatch is not None:
        fake_cifar10(root / "cifar10", monkeypatch)
    coco = root / "coco"
    images = [{"id": 7 + 5 * i, "file_name": f"{7 + 5 * i:012d}.jpg"} for i in range(len(COCO_CAPTIONS))]
    for image in images:
        jpeg(coco / "val2017" / image["file_name"])
    annotations = [
        {"id": i + 1, "image_id": image["id"], "caption": caption}
        for i, (image, caption) in enumerate(zip(images, COCO_CAPTIONS))
    ]
    names = COCO_NAMED + [f"thing{k}" for k in range(80 - len(COCO_NAMED))]
    categories = [{"id": 11 + k, "name": name} for k, name in enumerate(names)]
    named = [
        (image["id"], 11 + names.index(word))
        for image, caption in zip(images, COCO_CAPTIONS)
        for word in caption.lower().rstrip(".").split()
        if word in COCO_NAMED
    ]
    objects = [{"id": i + 1, "image_id": image, "category_id": category} for i, (image, category) in enumerate(named)]
    (coco / "annotations").mkdir()
    (coco / "annotations" / "captions_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations})
    )
    (coco / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": objects, "categories": categories})
    )
    located = {
        "imagenet-val": {"root": root / "imagenet"},
        "imagenet-train": {"root": root / "imagenet"},
        "pascal-context-val": {"root": root / "VOC2010"},
        "cifar10-test": {"root": root / "cifar10"},
        "coco-val": {
            "path": coco / "annotations" / "captions_val2017.json",
            "instances": coco / "annotations" / "instances_val2017.json",
        },
    }
    return {"datasets": {name: {key: str(path) for key, path in keys.items()} for name, keys in located.items()}}
