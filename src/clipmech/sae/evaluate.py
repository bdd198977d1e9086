"""Evaluation of a top-k sparse autoencoder at one hook site: reconstruction and downstream (methods.md Sec. 7;
Gao et al. 2024, Sec. 4).

The SAE (:class:`clipmech.sae.model.TopKSAE`: ``encode``, ``decode``, ``forward(x) -> (x_hat, z)``) reads
the tokens of one vision site, selected by its ``tokens`` setting
(:func:`clipmech.sae.latents.token_positions`: ``patch``, ``class`` or ``all``). Its reconstructions and
firing counts are computed from the latents' top-k codes (``encode_sparse``, ``decode_sparse``: the x_hat of
``forward``), for at most :data:`clipmech.sae.latents.ENCODE_ELEMENTS` pre-activations at a time; the dense
latents are never formed.

Reconstruction, on the tokens of the held-out images read from an activation store
(:mod:`clipmech.stores.activations`, float16, cast to float32 for the SAE; every sum in float64):

- FVU = sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mu||^2, mu the per-dimension mean over the same tokens
  (1 - explained variance; predicting mu gives exactly 1: both sums are the same float64 computation);
- L0: mean number of non-zero latents per token;
- firing frequency of each latent: the fraction of tokens on which it is non-zero; dead latents never
  fire on the evaluated tokens; dense latents fire on more than ``dense_threshold`` of them (default 0.1,
  :data:`DENSE_THRESHOLD`); the histogram of log10 frequency of the live latents
  (:func:`frequency_histogram`, bins of :data:`HISTOGRAM_BIN` decades);
- cosine(x_t, x_hat_t) and the norm ratio ||x_hat_t|| / ||x_t||, each averaged over tokens.

Downstream, with :func:`clipmech.hooks.sites.hooked` edits of the live site (:func:`splice`): the selected
tokens replaced by the reconstruction (``sae``), by the reconstruction plus the error term x - x_hat
(``sae_error``), by zero (``zero``) or by the mean mu of the evaluated tokens (``mean``); the other tokens
pass unchanged. On single-object images, for each attribute task of :mod:`clipmech.models.zeroshot`
(colour, shape, position prompts): the zero-shot accuracy and the KL divergence KL(p_clean || p) of the
zero-shot distribution p = softmax over the task's prompts of logit_scale x cosine (:func:`zero_shot_table`).
On a natural-image dataset with classes (ImageNet, an image folder) one task, ``class``, over the labelled
images: the prompts are the columns of the dataset's zero-shot classifier
(:func:`clipmech.models.zeroshot.classifier`, the mean prompt embedding of each class), so p is the
classifier's softmax at the model's logit scale (:func:`class_prompts`). A captions dataset has no single
class per image: no downstream metrics.

``sae_error`` reproduces the clean activation, and so the clean outputs, bitwise: the error term is
computed in float64, where x - x_hat of two float32 numbers is exact whenever neither exceeds the other
by a factor of 2^28 or more (or one is zero), so x_hat + (x - x_hat) is x exactly and casts back to the
same float32. In float32 arithmetic it is not exact: x_hat + (x - x_hat) differs from x in a few percent
of the entries (by one rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from clipmech.hooks.sites import hooked
from clipmech.models import zeroshot
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.sae.latents import ENCODE_ELEMENTS, read_tokens

#: A latent is dense when it fires on more than this fraction of the evaluated tokens.
DENSE_THRESHOLD = 0.1
#: Width of the firing-frequency histogram bins, in decades (log10 units).
HISTOGRAM_BIN = 0.25
#: Downstream conditions: the clean model and the four edits of :func:`splice`.
CONDITIONS = ("clean", "sae", "sae_error", "zero", "mean")
SPLICE_MODES = CONDITIONS[1:]


def token_mean(acts: xr.DataArray, images: Sequence[int], positions: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-dimension mean mu of the selected tokens of ``images``, float64 (D,) (float64 accumulator)."""
    total, count = None, 0
    for x_NTD in read_tokens(acts, images, positions, batch_size):
        x_BD = x_NTD.reshape(-1, x_NTD.shape[-1]).astype(np.float64)
        total = x_BD.sum(axis=0) if total is None else total + x_BD.sum(axis=0)
        count += x_BD.shape[0]
    if count == 0:
        raise ValueError("token_mean: no tokens to average (empty image list)")
    return total / count


class ReconstructionStats:
    """Streaming float64 accumulators of the reconstruction metrics (module docstring).

    Parameters
    ----------
    mean_D : numpy.ndarray, (D,)
        The per-dimension mean mu of every token that will be passed to :meth:`update` (:func:`token_mean`).
    n_latents : int
    """

    def __init__(self, mean_D: np.ndarray, n_latents: int):
        self.mean_D = torch.as_tensor(np.asarray(mean_D, dtype=np.float64))
        self.fires_U = torch.zeros(n_latents, dtype=torch.int64)
        self.n_tokens = 0
        self.sse = self.sst = self.cosine = self.norm_ratio = 0.0

    def update(
        self, x_BD: torch.Tensor, x_hat_BD: torch.Tensor, values_BK: torch.Tensor, indices_BK: torch.Tensor
    ) -> None:
        """Add B tokens: inputs, reconstructions and the latents' top-k codes, values and latent indices (B, k)
        (any float dtype, any device; :meth:`clipmech.sae.model.TopKSAE.encode_sparse`)."""
        x, x_hat = x_BD.detach().cpu().double(), x_hat_BD.detach().cpu().double()
        self.sse += float(((x - x_hat) ** 2).sum())
        self.sst += float(((x - self.mean_D) ** 2).sum())
        norm_x, norm_hat = x.norm(dim=-1), x_hat.norm(dim=-1)
        self.cosine += float(((x * x_hat).sum(-1) / (norm_x * norm_hat)).sum())
        self.norm_ratio += float((norm_hat / norm_x).sum())
        fired = indices_BK.detach().cpu()[values_BK.detach().cpu() != 0]
        self.fires_U += torch.bincount(fired, minlength=self.fires_U.numel())
        self.n_tokens += x.shape[0]

    @property
    def frequency(self) -> np.ndarray:
        """Firing frequency of each latent: fraction of the tokens where it is non-zero, float64 (U,)."""
        return self.fires_U.numpy() / self.n_tokens

    @property
    def fvu(self) -> float:
        """sum ||x - x_hat||^2 / sum ||x - mu||^2."""
        return self.sse / self.sst

    def summary(self, dense_threshold: float = DENSE_THRESHOLD) -> dict:
        """The metrics as a dict: ``fvu``, ``l0``, ``dead_fraction``, ``dense_fraction``, ``dense_threshold``,
        ``cosine``, ``norm_ratio``, ``n_tokens``.

        Raises
        ------
        ValueError
            If no token was added.
        """
        if self.n_tokens == 0:
            raise ValueError("reconstruction metrics of zero tokens: nothing was evaluated")
        frequency = self.frequency
        return {
            "fvu": self.fvu,
            "l0": float(self.fires_U.sum()) / self.n_tokens,
            "dead_fraction": float(np.mean(frequency == 0)),
            "dense_fraction": float(np.mean(frequency > dense_threshold)),
            "dense_threshold": float(dense_threshold),
            "cosine": self.cosine / self.n_tokens,
            "norm_ratio": self.norm_ratio / self.n_tokens,
            "n_tokens": int(self.n_tokens),
        }


def _sae_device_dtype(sae: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(sae.parameters())
    return parameter.device, parameter.dtype


@torch.inference_mode()
def reconstruction_stats(
    sae: torch.nn.Module, acts: xr.DataArray, images: Sequence[int], positions: np.ndarray, batch_size: int
) -> ReconstructionStats:
    """Stream the selected tokens of ``images`` through the SAE and accumulate the reconstruction metrics.

    Two passes over the store: mu (:func:`token_mean`), then the sums.

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    acts : xarray.DataArray, dims (image, token, unit)
        :func:`clipmech.stores.activations.site_activations`, dims renamed (image, token, unit).
    images : sequence of int
        The evaluated (held-out) images.
    positions : numpy.ndarray, int, (T',)
        :func:`clipmech.sae.latents.token_positions` of the SAE's token set.
    batch_size : int
        Images per read.

    Returns
    -------
    ReconstructionStats
    """
    device, dtype = _sae_device_dtype(sae)
    stats = ReconstructionStats(token_mean(acts, images, positions, batch_size), sae.W_enc.shape[0])
    for x_NTD in read_tokens(acts, images, positions, batch_size):
        x_BD = torch.from_numpy(x_NTD.reshape(-1, x_NTD.shape[-1])).to(device=device, dtype=dtype)
        for rows in torch.split(x_BD, _encoder_rows(sae)):
            values_BK, indices_BK, _, _ = sae.encode_sparse(rows)
            stats.update(rows, sae.decode_sparse(values_BK, indices_BK), values_BK, indices_BK)
    return stats


def _encoder_rows(sae: torch.nn.Module) -> int:
    """Tokens per encoder call: the dense pre-activations of at most
    :data:`clipmech.sae.latents.ENCODE_ELEMENTS` values."""
    return max(1, ENCODE_ELEMENTS // sae.W_enc.shape[0])


def _reconstruct(sae: torch.nn.Module, x_BD: torch.Tensor) -> torch.Tensor:
    """x_hat of ``sae.forward`` from the top-k codes, :func:`_encoder_rows` rows at a time (no dense latents)."""
    return torch.cat(
        [sae.decode_sparse(*sae.encode_sparse(rows)[:2]) for rows in torch.split(x_BD, _encoder_rows(sae))]
    )


def frequency_histogram(frequency_U: np.ndarray, n_tokens: int) -> dict:
    """Histogram of log10 firing frequency of the live latents, bins of :data:`HISTOGRAM_BIN` decades.

    The bins run from the lowest frequency possible on ``n_tokens`` tokens, 1 / n_tokens (rounded down to a
    bin edge), to 1; a frequency on an edge falls into the bin above it (numpy's ``histogram``, the last bin
    closed).

    Returns
    -------
    dict
        ``log10_edges`` (list of float, bins + 1), ``counts`` (list of int), ``n_dead`` (latents that
        never fire, not in the bins), ``n_tokens``.
    """
    frequency_U = np.asarray(frequency_U, dtype=np.float64)
    live = frequency_U[frequency_U > 0]
    n_bins = max(1, int(np.ceil(np.log10(n_tokens) / HISTOGRAM_BIN - 1e-9)))
    edges = np.linspace(-n_bins * HISTOGRAM_BIN, 0.0, n_bins + 1)
    counts, _ = np.histogram(np.log10(live), bins=edges)
    return {
        "log10_edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "n_dead": int(frequency_U.size - live.size),
        "n_tokens": int(n_tokens),
    }


def splice(
    sae: torch.nn.Module, positions: np.ndarray, mode: str, mean_D: np.ndarray | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit for :func:`clipmech.hooks.sites.hooked` of an (N, T, D) site: the tokens at ``positions``
    replaced by the SAE's reconstruction (``sae``), the reconstruction plus the error term (``sae_error``,
    the clean activation bitwise for float32 activations: module docstring), zeros (``zero``) or ``mean_D``
    (``mean``); the other tokens unchanged.

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    positions : numpy.ndarray, int, (T',)
    mode : {"sae", "sae_error", "zero", "mean"}
    mean_D : numpy.ndarray, (D,), optional
        Required for ``mean``.

    Raises
    ------
    ValueError
        For another mode, or ``mean`` without ``mean_D``.
    """
    if mode not in SPLICE_MODES:
        raise ValueError(f"unknown splice mode {mode!r}; valid modes are: {', '.join(SPLICE_MODES)}")
    if mode == "mean" and mean_D is None:
        raise ValueError("splice mode 'mean' needs mean_D, the mean of the evaluated tokens")
    index = torch.as_tensor(np.asarray(positions, dtype=np.int64))
    mean = None if mean_D is None else torch.as_tensor(np.asarray(mean_D, dtype=np.float64))
    device, dtype = _sae_device_dtype(sae)

    def edit(act_NTD: torch.Tensor) -> torch.Tensor:
        pos = index.to(act_NTD.device)
        x_NTD = act_NTD[:, pos]
        if mode == "zero":
            new = torch.zeros_like(x_NTD)
        elif mode == "mean":
            new = mean.to(device=act_NTD.device, dtype=act_NTD.dtype).expand_as(x_NTD)
        else:
            x_BD = x_NTD.reshape(-1, x_NTD.shape[-1])
            x_hat_BD = _reconstruct(sae, x_BD.to(device=device, dtype=dtype)).to(act_NTD.device)
            if mode == "sae_error":
                x_hat64 = x_hat_BD.double()
                x_hat_BD = x_hat64 + (x_BD.double() - x_hat64)
            new = x_hat_BD.to(act_NTD.dtype).reshape(x_NTD.shape)
        out = act_NTD.clone()
        out[:, pos] = new
        return out

    return edit


@torch.inference_mode()
def image_embeddings(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    edit: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None,
    *,
    batch_size: int,
    device: str | torch.device,
) -> torch.Tensor:
    """L2-normalised image embeddings, float32 (N, E) on ``device``, with the given site edits (None: clean)."""
    parts = []
    with hooked(model, edit=dict(edit or {})):
        for start in range(0, pixels_NCHW.shape[0], batch_size):
            embedding = model.encode_image(pixels_NCHW[start : start + batch_size].to(device)).float()
            parts.append(torch.nn.functional.normalize(embedding, dim=-1))
    return torch.cat(parts)


def zero_shot_log_probs(image_NE: torch.Tensor, text_KE: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """log softmax over the K prompts of logit_scale x cosine(image, prompt), float64 (N, K)."""
    image = torch.nn.functional.normalize(image_NE.double(), dim=-1)
    text = torch.nn.functional.normalize(text_KE.double(), dim=-1)
    return torch.log_softmax(logit_scale * image @ text.T, dim=-1)


def zero_shot_table(
    embeddings: Mapping[str, torch.Tensor],
    texts: Mapping[str, torch.Tensor],
    labels: Mapping[str, np.ndarray],
    logit_scale: float,
) -> pd.DataFrame:
    """Zero-shot accuracy and KL(p_clean || p) per condition and task (module docstring).

    Parameters
    ----------
    embeddings : mapping of str to torch.Tensor, (N, E)
        Condition -> image embeddings of the same N images; must hold ``clean``.
    texts : mapping of str to torch.Tensor, (K_task, E)
        Task -> prompt embeddings.
    labels : mapping of str to numpy.ndarray, int, (N,)
        Task -> the correct prompt of each image.
    logit_scale : float
        The model's ``logit_scale.exp()``.

    Returns
    -------
    pandas.DataFrame
        One row per condition x task (conditions in the mapping's order): ``condition, task, n_images,
        accuracy, kl`` (mean over images of KL in nats; 0 for ``clean``).

    Raises
    ------
    KeyError
        If ``embeddings`` has no ``clean`` entry.
    """
    if "clean" not in embeddings:
        raise KeyError(f"zero_shot_table needs the 'clean' embeddings; got conditions {list(embeddings)}")
    rows = []
    for task, text_KE in texts.items():
        label_N = torch.tensor(np.asarray(labels[task], dtype=np.int64))
        clean = zero_shot_log_probs(embeddings["clean"], text_KE, logit_scale).cpu()
        for condition, image_NE in embeddings.items():
            log_p = zero_shot_log_probs(image_NE, text_KE, logit_scale).cpu()
            kl_N = (clean.exp() * (clean - log_p)).sum(dim=-1)
            rows.append(
                {
                    "condition": condition,
                    "task": task,
                    "n_images": int(label_N.numel()),
                    "accuracy": float((log_p.argmax(dim=-1) == label_N).double().mean()),
                    "kl": float(kl_N.mean()),
                }
            )
    return pd.DataFrame(rows)


def class_prompts(weights_EK) -> dict[str, torch.Tensor]:
    """The prompts of the ``class`` task of a natural-image dataset: the (K, E) class embeddings, the columns of
    its zero-shot classifier (:func:`clipmech.models.zeroshot.load_classifier`), for :func:`downstream`."""
    return {"class": torch.as_tensor(weights_EK).detach().float().T.contiguous()}


def class_labels(labels_N: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The labelled images among ``images`` (a label of -1 is none: ImageNet's unlabelled images), sorted, int64,
    and their class, the correct prompt of the ``class`` task (:func:`class_prompts`)."""
    labels_N = np.asarray(labels_N, dtype=np.int64)
    images = np.sort(np.asarray(images, dtype=np.int64))
    labelled = images[labels_N[images] >= 0]
    return labelled, {"class": labels_N[labelled]}


def holdout_split(meta: dict, n_images: int, checkpoint: str) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's held-out images (``meta["holdout_images"]``, sorted) and the other images, int64.

    Raises
    ------
    ValueError
        If the held-out images are not distinct indices in 0..n_images-1 (at least one), or leave no
        training image.
    """
    holdout = np.asarray(meta["holdout_images"], dtype=np.int64)
    if holdout.size == 0:
        raise ValueError(
            f"SAE checkpoint {checkpoint} holds out none of the {n_images} images (round(sae.holdout x "
            f"{n_images}) = 0): the evaluation measures on held-out images; raise sae.holdout and retrain"
        )
    if np.unique(holdout).size != holdout.size or holdout.min() < 0 or holdout.max() >= n_images:
        raise ValueError(
            f"SAE checkpoint {checkpoint}: holdout_images must be distinct image indices in 0..{n_images - 1} "
            f"(at least one), got {holdout.size} entries"
        )
    holdout = np.sort(holdout)
    train = np.setdiff1d(np.arange(n_images), holdout)
    if train.size == 0:
        raise ValueError(f"SAE checkpoint {checkpoint}: every image is held out; the baselines need training images")
    return holdout, train


def single_object_labels(objects: pd.DataFrame, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The single-object images among ``images`` (int64, by image id) and the correct prompt of each
    attribute task (:data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS`, each named after its column of the
    object table) for them, int64."""
    single = objects[(objects["n_objects"] == 1) & objects["image_id"].isin(images)].sort_values("image_id")
    labels = {}
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, _ = zeroshot.attribute_prompts(task)
        labels[task] = single[task].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.int64)
    return single["image_id"].to_numpy(dtype=np.int64), labels


def downstream(
    model: torch.nn.Module,
    tokenizer,
    pixels_NCHW: torch.Tensor | Iterable[torch.Tensor],
    labels: Mapping[str, np.ndarray],
    *,
    sae: torch.nn.Module,
    site: str,
    positions: np.ndarray,
    mean_D: np.ndarray,
    batch_size: int,
    device: str | torch.device,
    texts: Mapping[str, torch.Tensor] | None = None,
) -> dict:
    """The downstream metrics (module docstring): zero-shot accuracy and KL of the clean model and of every
    :func:`splice` of the SAE at ``site``, on the given images.

    Parameters
    ----------
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S), or an iterable of such batches
        The preprocessed images (single-object Shapes images, or the labelled images of a natural-image
        dataset, streamed in batches so that they need not fit in memory).
    labels : mapping of str to numpy.ndarray, int, (N,)
        Task -> the correct prompt of each image (:func:`single_object_labels`, :func:`class_labels`).
    mean_D : numpy.ndarray, (D,)
        The mean of the evaluated tokens (``mean`` splice).
    texts : mapping of str to torch.Tensor, (K_task, E), optional
        Task -> prompt embeddings; the Shapes attribute prompts by default
        (:func:`clipmech.models.prompt_embeddings.attribute_prompt_embeddings`), :func:`class_prompts` for a
        natural-image dataset.

    Returns
    -------
    dict
        ``n_images``, ``logit_scale`` (the model's ``logit_scale.exp()``), ``error_term_max_abs_diff`` (the
        largest |embedding(sae_error) - embedding(clean)|, 0 when the splice is exact) and ``zero_shot``
        (the table of :func:`zero_shot_table`).
    """
    edits = {"clean": None, **{mode: {site: splice(sae, positions, mode, mean_D)} for mode in SPLICE_MODES}}
    parts: dict[str, list[torch.Tensor]] = {condition: [] for condition in edits}
    for batch in _pixel_batches(pixels_NCHW, batch_size):
        for condition, edit in edits.items():
            parts[condition].append(image_embeddings(model, batch, edit, batch_size=batch_size, device=device))
    if not parts["clean"]:
        raise ValueError("downstream metrics of zero images: nothing to classify")
    embeddings = {condition: torch.cat(chunks) for condition, chunks in parts.items()}
    if texts is None:
        texts = attribute_prompt_embeddings(model, tokenizer, device)
    texts = {task: text_KE.to(embeddings["clean"].device) for task, text_KE in texts.items()}
    logit_scale = float(model.logit_scale.detach().exp())
    return {
        "n_images": int(embeddings["clean"].shape[0]),
        "logit_scale": logit_scale,
        "error_term_max_abs_diff": float((embeddings["sae_error"] - embeddings["clean"]).abs().max()),
        "zero_shot": zero_shot_table(embeddings, texts, labels, logit_scale),
    }


def _pixel_batches(pixels, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of at most ``batch_size`` images of a (N, 3, S, S) tensor, or the batches of an iterable as given."""
    if isinstance(pixels, torch.Tensor):
        for start in range(0, pixels.shape[0], batch_size):
            yield pixels[start : start + batch_size]
    else:
        yield from pixels
