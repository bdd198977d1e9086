"""The neuron encoder E_n and its training (methods.md Sec. 9; MiCLIP paper Sec. 3.1, Eq. 2, App. B.1).

E_n is a bias-free linear map W (E, D) from a site's activation space (D channels, or C for a ResNet
stage) to the reference CLIP's embedding space (E): n = W a. Linearity is what MiCLIP's App. B.3 relies
on: E_n(a) = sum_i a_i E_n(e_i), so one unit's embedding E_n(a_i e_i) is a direction the training saw.

Loss (Eq. 2, Algorithm 1): the symmetric InfoNCE (:func:`symmetric_infonce`) of the batch's neuron
embeddings against the reference image embeddings E_i(x) (the input term) and against the reference text
embeddings of the target's predicted concepts E_c(c_hat) (the output term). Shapes scenes are
multi-label, so the output term is the mean over the three attribute types (colour, shape, position) of
the symmetric InfoNCE against the prompt of the target's zero-shot prediction for that type. Variants
(:data:`LOSSES`): ``both`` (input + output, Eq. 2), ``input`` and ``output`` (the ablations of Table 4).
The encoders E_i and E_c are frozen: their embeddings are computed once, outside. The encoders train on
the training images of the probe's split; the loss on its held-out images (:func:`heldout_loss`) is
recorded beside the training loss at every step.

Algorithm 1 writes plain cosines as the logits; Eq. 6 (App. B.3) divides them by a temperature tau. We
divide by tau (default 0.07, CLIP's initial temperature): with cosines alone the logits lie in [-1, 1]
and the softmax can never be sharp.

File (:func:`save_encoders`, :func:`load_encoders`): ``encoders.pt``, a verified artefact
(:mod:`clipmech.artefacts`) of plain values only, read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipmech import artefacts

#: Loss variants: Eq. 2 and its two ablations (MiCLIP Table 4).
LOSSES = ("both", "input", "output")

#: The rule that writes encoder files (named when one fails its checks).
RULE = "train_miclip"

#: Keys of an encoder file (:func:`save_encoders`).
FILE_KEYS = ("W", "losses", "seeds", "site", "params", "dataset_sha256")


def symmetric_infonce(a_BE: torch.Tensor, b_BE: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows (Algorithm 1, lines 9-12, with Eq. 6's temperature).

    S_ij = cos(a_i, b_j) / temperature; loss = -(1 / 2B) sum_i log softmax_j(S)_ii
    - (1 / 2B) sum_j log softmax_i(S)_jj, the mean of the row-wise and column-wise cross-entropies with
    the diagonal as targets. Symmetric in its arguments: loss(a, b) = loss(b, a).

    Parameters
    ----------
    a_BE, b_BE : torch.Tensor, float, (B, E)
        Paired embeddings (any norm: both are normalised here; a zero row has cosine 0 to everything).
    temperature : float
        tau > 0.

    Returns
    -------
    torch.Tensor, scalar, in nats

    Raises
    ------
    ValueError
        If the shapes differ or are not 2-D, or temperature <= 0.
    """
    if a_BE.ndim != 2 or a_BE.shape != b_BE.shape:
        raise ValueError(
            f"symmetric_infonce needs two (B, E) tensors of one shape, got {tuple(a_BE.shape)} and {tuple(b_BE.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits_BB = F.normalize(a_BE, dim=-1) @ F.normalize(b_BE, dim=-1).T / temperature
    target_B = torch.arange(a_BE.shape[0], device=a_BE.device)
    return 0.5 * (F.cross_entropy(logits_BB, target_B) + F.cross_entropy(logits_BB.T, target_B))


def alignment_loss(
    n_BE: torch.Tensor,
    image_BE: torch.Tensor,
    concept_BKE: torch.Tensor,
    loss: str,
    temperature: float,
) -> torch.Tensor:
    """The MiCLIP loss of one batch (module docstring; Eq. 2).

    Parameters
    ----------
    n_BE : torch.Tensor, (B, E)
        Neuron embeddings E_n(a).
    image_BE : torch.Tensor, (B, E)
        Reference image embeddings E_i(x).
    concept_BKE : torch.Tensor, (B, K, E)
        Reference text embeddings of the target's predicted concept for each of K attribute types.
    loss : {"both", "input", "output"}
    temperature : float

    Raises
    ------
    ValueError
        For another loss variant (the message lists them).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown MiCLIP loss {loss!r}; valid losses are: {', '.join(LOSSES)}")
    total = n_BE.new_zeros(())
    if loss in ("both", "input"):
        total = total + symmetric_infonce(n_BE, image_BE, temperature)
    if loss in ("both", "output"):
        terms = [symmetric_infonce(n_BE, concept_BKE[:, k], temperature) for k in range(concept_BKE.shape[1])]
        total = total + torch.stack(terms).mean()
    return total


def heldout_loss(
    W_ED: torch.Tensor,
    acts_HD: torch.Tensor,
    image_HE: torch.Tensor,
    concept_HKE: torch.Tensor,
    *,
    loss: str,
    batch_size: int,
    temperature: float,
) -> float:
    """The MiCLIP loss (:func:`alignment_loss`) of an encoder on held-out images, float: the mean over
    ``ceil(H / batch_size)`` consecutive batches of near-equal size (``numpy.array_split``, images in their
    given order), weighted by batch size, so that it is measured on batches like the training's.

    Raises
    ------
    ValueError
        If there is no held-out image.
    """
    n_heldout = acts_HD.shape[0]
    if n_heldout == 0:
        raise ValueError("heldout_loss needs at least one held-out image")
    total = 0.0
    with torch.no_grad():
        for batch in np.array_split(np.arange(n_heldout), -(-n_heldout // batch_size)):
            index = torch.as_tensor(batch)
            value = alignment_loss(acts_HD[index] @ W_ED.T, image_HE[index], concept_HKE[index], loss, temperature)
            total += float(value) * batch.size
    return total / n_heldout


def train_encoder(
    acts_ND: np.ndarray,
    image_NE: np.ndarray,
    concept_NKE: np.ndarray,
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    loss: str,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    temperature: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train one bias-free linear encoder E_n with Adam on seeded batches of the training images (Algorithm 1).

    W (E, D) starts from N(0, 1 / D) entries drawn with ``torch.Generator().manual_seed(seed)``; each
    epoch visits the images in an order drawn by ``numpy.random.default_rng(seed)`` (the last batch of
    an epoch may be smaller; batches never mix epochs). Float32 on the CPU. The held-out images enter
    nothing but the held-out loss (:func:`heldout_loss`).

    Parameters
    ----------
    acts_ND : numpy.ndarray, float, (N, D)
        Image-level site activations a of the training images.
    image_NE : numpy.ndarray, float, (N, E)
        Reference image embeddings.
    concept_NKE : numpy.ndarray, float, (N, K, E)
        Reference text embeddings of the target's predicted concept per attribute type.
    heldout : tuple of numpy.ndarray, (H, D), (H, E), (H, K, E)
        The same three arrays of the held-out images.
    loss : {"both", "input", "output"}
    seed, steps, batch_size : int
    lr, temperature : float

    Returns
    -------
    W_ED : numpy.ndarray, float32, (E, D)
    losses : numpy.ndarray, float64, (steps,)
        The loss of each step's batch, before its update.
    heldout_losses : numpy.ndarray, float64, (steps,)
        The held-out loss before each step's update.

    Raises
    ------
    ValueError
        For an unknown loss, mismatched N or H, no held-out image, steps or batch_size < 1.
    """
    n_images = acts_ND.shape[0]
    for name, arrays in (("training", (acts_ND, image_NE, concept_NKE)), ("held-out", heldout)):
        if len({array.shape[0] for array in arrays}) != 1:
            raise ValueError(
                f"train_encoder: {name} activations, image and concept embeddings need one N, got "
                f"{', '.join(str(array.shape[0]) for array in arrays)}"
            )
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    if loss not in LOSSES:
        raise ValueError(f"unknown MiCLIP loss {loss!r}; valid losses are: {', '.join(LOSSES)}")
    acts = torch.as_tensor(np.asarray(acts_ND, dtype=np.float32))
    images = torch.as_tensor(np.asarray(image_NE, dtype=np.float32))
    concepts = torch.as_tensor(np.asarray(concept_NKE, dtype=np.float32))
    held = [torch.as_tensor(np.asarray(array, dtype=np.float32)) for array in heldout]
    generator = torch.Generator().manual_seed(seed)
    d, e = acts.shape[1], images.shape[1]
    W = torch.nn.Parameter(torch.randn(e, d, generator=generator) / np.sqrt(d))
    optimiser = torch.optim.Adam([W], lr=lr)
    rng = np.random.default_rng(seed)
    order, cursor = rng.permutation(n_images), 0
    losses = np.empty(steps, dtype=np.float64)
    heldout_losses = np.empty(steps, dtype=np.float64)
    for step in range(steps):
        heldout_losses[step] = heldout_loss(
            W.detach(), *held, loss=loss, batch_size=batch_size, temperature=temperature
        )
        if cursor >= n_images:
            order, cursor = rng.permutation(n_images), 0
        batch = torch.as_tensor(order[cursor : cursor + batch_size])
        cursor += batch_size
        value = alignment_loss(acts[batch] @ W.T, images[batch], concepts[batch], loss, temperature)
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
        losses[step] = float(value.detach())
    return W.detach().numpy().copy(), losses, heldout_losses


def train_all(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    losses: list[str],
    seeds: list[int],
    params: Mapping,
) -> tuple[dict[tuple[str, int], np.ndarray], dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]]:
    """Train one encoder per (loss, seed) (:func:`train_encoder`; ``params``: steps, batch_size, lr, temperature).

    Parameters
    ----------
    train, heldout : tuple of numpy.ndarray, (N, D), (N, E), (N, K, E)
        Activations, reference image embeddings and predicted-concept embeddings of the training and of
        the held-out images.

    Returns
    -------
    encoders : dict of (str, int) to numpy.ndarray, float32, (E, D)
    curves : dict of (str, int) to (numpy.ndarray, numpy.ndarray), float64, (steps,)
        The training and the held-out loss of every step.
    """
    encoders, curves = {}, {}
    for loss in losses:
        for seed in seeds:
            W, train_curve, heldout_curve = train_encoder(
                *train,
                heldout,
                loss=loss,
                seed=seed,
                steps=params["steps"],
                batch_size=params["batch_size"],
                lr=params["lr"],
                temperature=params["temperature"],
            )
            encoders[loss, seed], curves[loss, seed] = W, (train_curve, heldout_curve)
    return encoders, curves


def save_encoders(
    path: str | Path,
    encoders: Mapping[tuple[str, int], np.ndarray],
    *,
    site: str,
    params: Mapping,
    dataset_sha256: str,
    rule: str = RULE,
) -> None:
    """Write the encoders of :func:`train_all` as a verified artefact, refusing non-finite ones.

    The file holds ``{"W": {"<loss>/<seed>": float32 (E, D) tensor}, "losses", "seeds", "site", "params",
    "dataset_sha256"}``: tensors, dicts, lists, str and numbers only (``params`` is passed through JSON), so
    :func:`load_encoders` reads it with ``torch.load(weights_only=True)``.

    Raises
    ------
    ValueError
        If an encoder holds a NaN or an infinity (the message names it and the training settings ``params``:
        lr, steps, batch_size, temperature); nothing is written.
    """
    plain = json.loads(json.dumps(dict(params), default=str))
    bad = [f"{loss}/{seed}" for (loss, seed), W in encoders.items() if not np.isfinite(np.asarray(W)).all()]
    if bad:
        settings = ", ".join(
            f"{key} {plain[key]}" for key in ("lr", "steps", "batch_size", "temperature") if key in plain
        )
        raise ValueError(
            f"MiCLIP encoders {', '.join(bad)} for {path} (site {site}) have non-finite weights: training diverged "
            f"with {settings}; nothing is written. Lower lr (or raise temperature) and run rule {rule} again"
        )
    record = {
        "W": {
            f"{loss}/{seed}": torch.as_tensor(np.asarray(W, dtype=np.float32)) for (loss, seed), W in encoders.items()
        },
        "losses": list(dict.fromkeys(str(loss) for loss, _ in encoders)),
        "seeds": list(dict.fromkeys(int(seed) for _, seed in encoders)),
        "site": str(site),
        "params": plain,
        "dataset_sha256": str(dataset_sha256),
    }
    artefacts.save_torch(path, record, rule=rule)


def load_encoders(path: str | Path, *, rule: str = RULE) -> dict:
    """Read an encoder file of :func:`save_encoders`: its sha256 checked, then ``torch.load(weights_only=True)``.

    Returns
    -------
    dict
        :data:`FILE_KEYS`; ``W`` maps ``"<loss>/<seed>"`` to float32 (E, D) tensors.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it fails its sha256 check (garbled, truncated, no record), is not readable with
        ``weights_only=True``, lacks a key of :data:`FILE_KEYS`, or an encoder is not finite; the message
        names the file and the rule that rebuilds it.
    """
    record = artefacts.load_torch(path, rule=rule)
    if not isinstance(record, dict) or any(key not in record for key in FILE_KEYS):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"MiCLIP encoder file {path} holds {found}, not the keys {', '.join(FILE_KEYS)}")
    bad = [key for key, W in record["W"].items() if not torch.isfinite(W).all()]
    if bad:
        raise ValueError(
            f"MiCLIP encoder file {path} has non-finite weights in {', '.join(bad)}: delete it and run rule {rule} "
            "again with other settings (a lower lr)"
        )
    return record
