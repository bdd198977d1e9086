"""Loading CLIP models through open_clip, by the names a config's ``models:`` section gives them.

A model spec maps a name to an open_clip architecture and a ``pretrained`` value: either an
open_clip tag (``ViT-L-14`` / ``openai``) or a local checkpoint path (a checkpoint this pipeline
trained, or any open_clip-compatible state dict). All loading goes through
``open_clip.create_model_and_transforms``. The small architectures the pipeline trains itself are
open_clip model configs shipped in ``clipmech/models/model_configs/`` and registered with
``open_clip.add_model_config``.

The tokenizer is loaded apart from the model (:func:`load_tokenizer`): SigLIP's (any open_clip config
with a ``text_cfg.hf_tokenizer_name``) is a Hugging Face tokenizer whose files come from the Hub or its
local cache, while the model itself never needs them. Work on the vision tower alone uses
:func:`load_model` and so runs offline; :func:`load` loads both.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import LocalEntryNotFoundError
from huggingface_hub.file_download import repo_folder_name

from clipmech import __version__
from clipmech.artefacts import file_sha256
from clipmech.checkpoints import is_local_checkpoint

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the config's ``models:`` section.

    Attributes
    ----------
    name : str
        The key in ``models:``; used in output paths.
    architecture : str
        An open_clip model name (``open_clip.list_models()``, including clipmech's own configs).
    pretrained : str or None
        An open_clip pretrained tag, a path to a local checkpoint, or None for random weights.
    sha256 : str or None
        The expected sha256 (hex) of a local checkpoint, checked before it is loaded
        (:func:`verify_checkpoint`); None to rely on the record of a pipeline-trained checkpoint.
    image_size : int or None
        Input resolution in pixels in place of the architecture's (open_clip's ``force_image_size``; the
        eval transform resizes to it); None keeps the architecture's.
    context_length : int or None
        Text tokens per prompt in place of the architecture's (open_clip's ``force_context_length``; the
        tokenizer truncates to it); None keeps the architecture's.

    Raises
    ------
    ValueError
        On construction, if ``architecture`` is not an open_clip model (the message lists the valid
        ones), or ``sha256`` is given without a local checkpoint to check it against.
    """

    name: str
    architecture: str
    pretrained: str | None
    sha256: str | None = None
    image_size: int | None = None
    context_length: int | None = None

    def __post_init__(self) -> None:
        """Check the architecture and the ``sha256`` (see Raises above)."""
        valid = open_clip.list_models()
        if self.architecture not in valid:
            raise ValueError(
                f"model {self.name!r}: unknown open_clip architecture {self.architecture!r}; valid architectures "
                "are: " + ", ".join(valid)
            )
        if self.sha256 is not None and not is_local_checkpoint(self.pretrained):
            raise ValueError(
                f"model {self.name!r}: `sha256` checks a local checkpoint file, but `pretrained` is "
                f"{self.pretrained!r} (an open_clip tag or None); drop `sha256` or point `pretrained` at the file"
            )

    @property
    def is_local_checkpoint(self) -> bool:
        """True when ``pretrained`` names a file rather than an open_clip tag."""
        return is_local_checkpoint(self.pretrained)


#: A checkpoint the pipeline trains has its sha256 recorded in this file beside it, under
#: ``checkpoint_sha256`` (:func:`clipmech.models.train.train_and_save` writes both).
TRAINING_RECORD = "metrics.json"


def expected_sha256(spec: ModelSpec) -> tuple[str, str] | None:
    """The sha256 a local checkpoint must have, and where it is recorded; None when nothing records it.

    The config's ``sha256`` key wins; else the training record beside a pipeline-trained checkpoint.
    """
    if spec.sha256 is not None:
        return spec.sha256.lower(), f"models.{spec.name}.sha256 in the config"
    record = Path(spec.pretrained).with_name(TRAINING_RECORD)
    if record.is_file():
        recorded = json.loads(record.read_text()).get("checkpoint_sha256")
        if recorded is not None:
            return recorded, str(record)
    return None


def verify_checkpoint(spec: ModelSpec) -> None:
    """Check a local checkpoint against its recorded sha256 before it is used.

    ``torch.load`` reads a checkpoint whose bytes were garbled in place without complaint (the model
    then computes NaNs), so the file is hashed and compared with :func:`expected_sha256`; a checkpoint
    that nothing records (a user's file without ``sha256``) is loaded as it is.

    Raises
    ------
    ValueError
        If the file's sha256 differs from the recorded one; the message names the file, both hashes
        and where the expected one is recorded.
    """
    expected = expected_sha256(spec)
    if expected is None:
        return
    digest, where = expected
    actual = file_sha256(spec.pretrained)
    if actual != digest:
        raise ValueError(
            f"model {spec.name!r}: checkpoint {spec.pretrained} has sha256 {actual}, but {where} records "
            f"{digest}: the file changed after it was written (corrupt, truncated or replaced). Restore it, "
            "or delete it so that the pipeline trains it again (or fix the recorded sha256)."
        )


def resolve_device(device: str) -> torch.device:
    """The torch device of a config's ``device``: ``auto`` picks CUDA when present, else the CPU.

    Raises
    ------
    RuntimeError
        If a CUDA device is asked for (``cuda``, ``cuda:1``) and torch finds none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"extraction.device is {device!r}, but torch finds no CUDA device on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); set extraction.device to auto or cpu"
        )
    return resolved


def load_model(spec: ModelSpec, device: str | torch.device = "cpu"):
    """Create a model with its eval transform, without its tokenizer (no Hugging Face files needed).

    Returns
    -------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
        In eval mode on ``device``; random weights (``pretrained`` None) are drawn with torch seed
        ``RANDOM_INIT_SEED`` without disturbing the caller's random state.
    preprocess : callable
        open_clip's eval transform (PIL image -> float tensor (3, S, S)).

    Raises
    ------
    FileNotFoundError
        If ``pretrained`` is a local path that does not exist (the message names it).
    ValueError
        If a local checkpoint's sha256 differs from its recorded one (:func:`verify_checkpoint`).
    RuntimeError
        If a local checkpoint cannot be loaded into the architecture (the message names the file).
    """
    if spec.is_local_checkpoint:
        if not Path(spec.pretrained).is_file():
            raise FileNotFoundError(
                f"model {spec.name!r}: checkpoint {spec.pretrained} does not exist "
                "(train it with the pipeline or point `pretrained` at an existing file)"
            )
        verify_checkpoint(spec)
    with torch.random.fork_rng(devices=[]):
        # Random weights (pretrained None) are drawn from a fixed seed, so a random-init model is
        # the same model in every job (resumed extractions, tests of paper architectures).
        torch.manual_seed(RANDOM_INIT_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.architecture,
                pretrained=spec.pretrained,
                device=device,
                force_image_size=spec.image_size,
                force_context_length=spec.context_length,
            )
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            if not spec.is_local_checkpoint:
                raise
            raise RuntimeError(
                f"model {spec.name!r}: cannot load checkpoint {spec.pretrained} as {spec.architecture} "
                f"(truncated, corrupt or another architecture): {error}"
            ) from error
    model.eval()
    return model, preprocess


def meta_model(architecture: str, image_size: int | None = None, context_length: int | None = None):
    """An architecture at the given sizes (as :class:`ModelSpec` overrides them) on PyTorch's meta device: its
    shapes and parameter counts without weights or memory (the resource estimates, the tracing cost)."""
    return open_clip.create_model(
        architecture,
        pretrained=None,
        device="meta",
        force_image_size=image_size,
        force_context_length=context_length,
    )


def load_tokenizer(spec: ModelSpec):
    """The tokenizer of a model's architecture: ``open_clip.get_tokenizer(architecture)``, at the spec's
    ``context_length`` when it sets one.

    open_clip's own BPE tokenizer needs no files; an architecture whose config names a Hugging Face
    tokenizer (``text_cfg.hf_tokenizer_name``, e.g. ``timm/ViT-B-16-SigLIP`` for the SigLIP models) is
    built by ``transformers.AutoTokenizer`` from that repository's files, fetched from the Hub or read
    from the local Hugging Face cache (``huggingface_hub.constants.HF_HUB_CACHE``). Without a
    connection and without ``HF_HUB_OFFLINE`` the Hub is retried for about 45 s before this fails.

    Returns
    -------
    callable
        list of P str -> torch.Tensor, int64, (P, context length of the model config).

    Raises
    ------
    FileNotFoundError
        If the Hugging Face tokenizer's files can neither be downloaded nor found in the local cache
        (``huggingface_hub.errors.LocalEntryNotFoundError``); the message names the model, the
        tokenizer's repository, the cache folder it is looked for in and how to provide it.
    """
    try:
        return open_clip.get_tokenizer(spec.architecture, context_length=spec.context_length)
    except OSError as error:
        # transformers wraps the hub's LocalEntryNotFoundError in a plain OSError (raise ... from).
        missing = error if isinstance(error, LocalEntryNotFoundError) else error.__cause__
        if not isinstance(missing, LocalEntryNotFoundError):
            raise
        repo = open_clip.get_model_config(spec.architecture)["text_cfg"]["hf_tokenizer_name"]
        folder = Path(hf_constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
        raise FileNotFoundError(
            f"model {spec.name!r} ({spec.architecture}): its tokenizer is the Hugging Face tokenizer {repo!r}, "
            f"whose files (tokenizer_config.json, tokenizer.json, ...) are not in the local Hugging Face cache "
            f"({folder}) and cannot be downloaded from the Hub. Provide them: run "
            f"`python -c \"import open_clip; open_clip.get_tokenizer('{spec.architecture}')\"` once on a machine "
            "online, then copy its Hugging Face cache here and point HF_HOME at the copy (or HF_HUB_CACHE at "
            "its hub/ folder); set HF_HUB_OFFLINE=1 to skip the Hub's retries. Vision-only work needs no "
            "tokenizer (clipmech.models.loading.load_model)."
        ) from error


def load(spec: ModelSpec, device: str | torch.device = "cpu"):
    """Create a model with its eval transform and tokenizer: :func:`load_tokenizer`, then :func:`load_model`
    (the tokenizer first, so that missing Hugging Face files fail before a large model is built).

    Returns
    -------
    model, preprocess
        As :func:`load_model` returns them.
    tokenizer : callable
        As :func:`load_tokenizer` returns it (context length from the model config).

    Raises
    ------
    FileNotFoundError
        If a local checkpoint does not exist, or a Hugging Face tokenizer's files are not available
        (:func:`load_tokenizer`); the message names them.
    ValueError
        If a local checkpoint's sha256 differs from its recorded one (:func:`verify_checkpoint`).
    RuntimeError
        If a local checkpoint cannot be loaded into the architecture (the message names the file).
    """
    tokenizer = load_tokenizer(spec)
    model, preprocess = load_model(spec, device)
    return model, preprocess, tokenizer


def weights_id(spec: ModelSpec) -> str:
    """What identifies the weights: ``sha256:<hex>`` for a local checkpoint, else the open_clip tag
    (``random-init:seed<N>`` when ``pretrained`` is None)."""
    if spec.is_local_checkpoint:
        return "sha256:" + file_sha256(spec.pretrained)
    return spec.pretrained or f"random-init:seed{RANDOM_INIT_SEED}"


@torch.inference_mode()
def encode_text(model, tokenizer, prompts: list[str], device: str | torch.device = "cpu") -> torch.Tensor:
    """L2-normalised text embeddings, float32, (len(prompts), E)."""
    tokens = tokenizer(prompts).to(device)
    return torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)


def preprocess_images(images_NHW3, preprocess) -> torch.Tensor:
    """Apply a model's eval transform to uint8 RGB arrays.

    Parameters
    ----------
    images_NHW3 : numpy.ndarray, uint8, (N, H, W, 3)
    preprocess : callable
        The transform returned by :func:`load` (PIL image -> tensor).

    Returns
    -------
    torch.Tensor, float32, (N, 3, S, S)
    """
    from PIL import Image

    return torch.stack([preprocess(Image.fromarray(image)) for image in images_NHW3])


def preprocess_square_batch(images_NHW3, preprocess_cfg: dict) -> torch.Tensor:
    """A batched tensor version of open_clip's eval transform for square uint8 RGB images.

    Resizes the whole batch at once (bicubic with antialiasing, as the PIL path does), then
    normalises. On square inputs open_clip's ``Resize(shortest side)`` + ``CenterCrop`` reduce to
    this resize; the result matches :func:`preprocess_images` to within one grey level (rounding of
    the resampling filter), about 5x faster on 128 images of 224 px (``benchmarks/preprocess.py``).
    Training uses it; evaluation and extraction keep the model's own transform.

    Parameters
    ----------
    images_NHW3 : numpy.ndarray, uint8, (N, H, H, 3)
    preprocess_cfg : dict
        ``model.visual.preprocess_cfg``: ``size``, ``mean``, ``std``, ``interpolation``.

    Returns
    -------
    torch.Tensor, float32, (N, 3, S, S)

    Raises
    ------
    ValueError
        If the images are not square RGB, or the transform is not bicubic/bilinear with a square size.
    """
    import torchvision.transforms.v2.functional as TF

    if images_NHW3.ndim != 4 or images_NHW3.shape[1] != images_NHW3.shape[2] or images_NHW3.shape[3] != 3:
        raise ValueError(f"expected square RGB images (N, H, H, 3), got shape {images_NHW3.shape}")
    height, width = (preprocess_cfg["size"],) * 2 if isinstance(preprocess_cfg["size"], int) else preprocess_cfg["size"]
    modes = {"bicubic": TF.InterpolationMode.BICUBIC, "bilinear": TF.InterpolationMode.BILINEAR}
    mode = modes.get(preprocess_cfg.get("interpolation", "bicubic"))
    if height != width or mode is None:
        raise ValueError(f"the batched transform covers square bicubic/bilinear resizes, got {preprocess_cfg}")
    pixels = torch.from_numpy(images_NHW3).permute(0, 3, 1, 2)
    pixels = TF.resize(pixels, [height, width], interpolation=mode, antialias=True)
    pixels = TF.to_dtype(pixels, torch.float32, scale=True)
    return TF.normalize(pixels, mean=list(preprocess_cfg["mean"]), std=list(preprocess_cfg["std"]))


def run_provenance(spec: ModelSpec, preprocess, dataset_dir, dataset_sha256: str, batch_size: int) -> dict:
    """What identifies a run of a model over a dataset, as every resumable store records it: model, weights,
    preprocessing, dataset, chunk size and package versions (a store passes them with its own fields to
    its provenance class, :mod:`clipmech.stores.base`)."""
    return {
        "model": spec.name,
        "architecture": spec.architecture,
        "weights": weights_id(spec),
        "preprocess": repr(preprocess),
        "dataset": str(dataset_dir),
        "dataset_sha256": dataset_sha256,
        "batch_size": int(batch_size),
        "clipmech_version": __version__,
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    }
