"""Training of a top-k SAE on one site of an activation store, resumable (methods.md Sec. 7).

Loss of a batch of B tokens x (float32, (B, d))::

    FVU  = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2          (mean over the batch)
    AuxK = sum ||e - e_hat||^2 / sum ||e - mean(e)||^2          e = x - x_hat (no gradient)
    loss = FVU + AuxK / 32

AuxK (Gao et al. 2024, Sec. A.2): e_hat = W_dec z_aux, where z_aux = ReLU(TopK_{k_aux}) of the
pre-activations of the dead latents only (a latent is dead when it has not fired, z > 0, in the last
``dead_tokens`` training tokens); without b_pre, since e already excludes it. AuxK is 0 while no latent
is dead (and is then not computed), and ``k_aux = 0`` turns it off. The encoder's backward pass is sparse
(:meth:`clipmech.sae.model.TopKSAE.encode_sparse`). Where the reference implementations disagree, this follows
OpenAI's (``sparse_autoencoder``, Gao et al.'s code):

- normalisation: AuxK is normalised like the main term, by the variance of its own target e about
  its batch mean (OpenAI's ``normalized_mse``); EleutherAI's ``sparsify`` divides by the variance of x
  and multiplies by min(n_dead / k_aux, 1);
- gradient: AuxK trains the encoder rows and biases of the dead latents as well as their decoder
  columns (OpenAI); in sparsify's fused encoder the AuxK gradient reaches the decoder only;
- when fewer than k_aux latents are dead, all of them are used (both);
- k_aux defaults to d / 2 (sparsify's heuristic from Gao et al.; methods.md), configurable;
- dead: no z > 0 in the last ``dead_tokens`` tokens (OpenAI counts steps without a value above 1e-3,
  sparsify tokens without being among the top k);
- the main term's denominator is the batch's own variance (methods.md, sparsify); OpenAI divides the
  MSE by a variance estimated once from a sample;
- the decoder is renormalised after each step (methods.md); OpenAI renormalises after the backward
  pass, before the step, sparsify before each forward.

AuxK revives latents that lose the top-k while some of their pre-activations stay positive: on tokens
with a power-law variance spectrum it leaves about a third as many dead latents
(tests/unit/sae/test_train.py). Where the residual is only noise it has nothing to fit and lowers the
dead latents' pre-activations instead (on planted dictionaries and low-rank data in our experiments
more latents stayed dead with it), so ``k_aux = 0`` is worth a try there.

Optimiser: Adam (betas 0.9, 0.999, eps 6.25e-10 as in OpenAI's code), constant learning rate
:func:`scaled_lr` = lr / sqrt(n / 2^14) (Gao et al. Sec. 2.3: the optimal learning rate falls as
n^-1/2; EleutherAI sparsify's default is 2e-4 at n = 2^14, the base ``lr`` here). Every step:
backward, :meth:`~clipmech.sae.model.TopKSAE.remove_parallel_grad`, Adam step,
:meth:`~clipmech.sae.model.TopKSAE.normalize_decoder`. b_pre (the geometric median) and the encoder's
scale come from the first training batch (:meth:`~clipmech.sae.model.TopKSAE.init_from_data`), which is
also the first step's batch.

Data: :class:`clipmech.sae.streaming.ShuffleStream` over the training images of
:func:`clipmech.sae.streaming.split_images`; ``n_tokens // batch_size`` steps.

Resumable: every ``checkpoint_every`` steps the training state (model, Adam, dead-latent counters, the
per-step log, the step) is written to ``<sae file>.resume``, a verified artefact (:mod:`clipmech.artefacts`:
atomic, with a sha256 record ``<sae file>.resume.sha256``). The stream needs no state of
its own (it restarts at any batch, :mod:`clipmech.sae.streaming`) and nothing random is drawn after
the initialisation, so a training killed and resumed from its last checkpoint ends with the same
weights, bit for bit, as one run uninterrupted (on the same device and thread count). A state whose
settings (:class:`SAETrainConfig`, site, store attributes, the caller's ``provenance``) differ from the
run's, or that fails its sha256 check or cannot be read, is discarded with a warning and the training
starts afresh (never resumed from a garbled state); the state is deleted once the SAE file is written.

Finite or refused: a training that ends with a non-finite weight writes no SAE file and raises, naming
its settings; one whose final FVU (mean over the last 10 % of steps) exceeds ``max_fvu`` is published with
a warning and ``diverged: true`` in its meta.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from clipmech import artefacts
from clipmech.data import tables
from clipmech.sae.model import RULE, TopKSAE, non_finite_parameters, save_sae
from clipmech.sae.streaming import TOKENS, ShuffleStream, SiteTokens, split_images
from clipmech.stores import activations

log = logging.getLogger(__name__)

#: Weight of the AuxK term (Gao et al.).
AUXK_COEF = 1 / 32

#: Adam's epsilon (OpenAI's sparse_autoencoder).
ADAM_EPS = 6.25e-10

#: Columns of the per-step log (training.tsv): step (1-based), tokens seen, FVU and AuxK of the step's
#: batch, mean L0 of its tokens, fraction of latents dead before the step.
LOG_COLUMNS = ("step", "tokens", "fvu", "auxk", "l0", "dead_fraction")


@dataclass(frozen=True)
class SAETrainConfig:
    """Settings of one SAE training (the ``sae:`` config block without ``models`` and ``sites``).

    Attributes
    ----------
    tokens : {"patch", "class", "all"}
        Tokens of each image trained on (:data:`clipmech.sae.streaming.TOKENS`).
    expansion : float
        n = expansion x d latents, unless ``n_latents`` is set; expansion x d must be an integer.
    n_latents : int or None
        Number of latents, overriding ``expansion``.
    k : int
        Active latents per token.
    k_aux : int or None
        Dead latents of AuxK (None: d // 2; 0: no AuxK).
    dead_tokens : int
        N_dead: a latent that has not fired in this many training tokens is dead.
    lr : float
        Base learning rate at n = 2^14 (:func:`scaled_lr`).
    n_tokens : int
        Token budget; ``n_tokens // batch_size`` steps.
    batch_size : int
    buffer_tokens : int
        Shuffle-buffer capacity in tokens (:class:`clipmech.sae.streaming.ShuffleStream`).
    holdout : float
        Fraction of images held out for evaluation (:func:`clipmech.sae.streaming.split_images`).
    checkpoint_every : int
        Steps between training-state checkpoints.
    max_fvu : float
        Divergence bound on the final FVU (module docstring); not part of what a resumed state must match.
    seed : int
        Seed of the initialisation, the split and the stream.
    """

    tokens: str = "all"
    expansion: float = 8
    n_latents: int | None = None
    k: int = 8
    k_aux: int | None = None
    dead_tokens: int = 100_000
    lr: float = 2e-4
    n_tokens: int = 2_000_000
    batch_size: int = 1024
    buffer_tokens: int = 65_536
    holdout: float = 0.1
    checkpoint_every: int = 500
    max_fvu: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.tokens not in TOKENS:
            raise ValueError(f"unknown tokens {self.tokens!r}; valid: {', '.join(TOKENS)}")
        positive = ("k", "dead_tokens", "n_tokens", "batch_size", "buffer_tokens", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"SAE setting {name} must be at least 1, got {getattr(self, name)!r}")
        if self.n_tokens < self.batch_size:
            raise ValueError(f"n_tokens = {self.n_tokens} is less than one batch of batch_size = {self.batch_size}")
        if self.k_aux is not None and self.k_aux < 0:
            raise ValueError(f"k_aux must be >= 0 (0: no AuxK) or null (d / 2), got {self.k_aux}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.max_fvu > 0:
            raise ValueError(f"max_fvu must be positive, got {self.max_fvu}")

    @property
    def steps(self) -> int:
        """Optimiser steps of the budget."""
        return self.n_tokens // self.batch_size

    def latents(self, d: int) -> int:
        """n for input width d.

        Raises
        ------
        ValueError
            If expansion x d is not an integer and ``n_latents`` is not set.
        """
        if self.n_latents is not None:
            return int(self.n_latents)
        n = self.expansion * d
        if abs(n - round(n)) > 1e-9 or round(n) < 1:
            raise ValueError(
                f"expansion {self.expansion} x d = {d} gives {n} latents, not a positive integer; "
                "set n_latents instead (it overrides expansion)"
            )
        return int(round(n))

    def auxk_latents(self, d: int) -> int:
        """k_aux for input width d: ``k_aux``, or d // 2 when it is None."""
        return d // 2 if self.k_aux is None else int(self.k_aux)


def scaled_lr(base_lr: float, n_latents: int) -> float:
    """The learning rate of an SAE with n latents: base_lr / sqrt(n / 2^14) (module docstring)."""
    return base_lr / math.sqrt(n_latents / 2**14)


def fvu(x_BD: torch.Tensor, x_hat_BD: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained on a batch: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (0-dim).

    The denominator is replaced by 1 where it is 0 (a constant batch), so the result stays finite.
    """
    total = (x_BD - x_BD.mean(dim=0)).square().sum()
    return (x_BD - x_hat_BD).square().sum() / torch.where(total > 0, total, torch.ones_like(total))


def auxk_loss(sae: TopKSAE, aux_values_BK: torch.Tensor, aux_indices_BK: torch.Tensor, residual_BD: torch.Tensor):
    """The AuxK term (module docstring): FVU of the residual's reconstruction by the AuxK latents.

    Parameters
    ----------
    sae : TopKSAE
    aux_values_BK, aux_indices_BK : torch.Tensor, (B, K)
        The AuxK latents of :meth:`~clipmech.sae.model.TopKSAE.encode_sparse` (with their graph: AuxK
        trains the dead latents' encoder and decoder).
    residual_BD : torch.Tensor, (B, d)
        x - x_hat, detached.

    Returns
    -------
    torch.Tensor, 0-dim
    """
    return fvu(residual_BD, sae.decode_sparse(aux_values_BK, aux_indices_BK, bias=False))


def train_step(
    sae: TopKSAE, optimizer: torch.optim.Optimizer, x_BD: torch.Tensor, since_fired_n: torch.Tensor, cfg: SAETrainConfig
) -> torch.Tensor:
    """One optimiser step on a batch (module docstring); updates ``since_fired_n`` in place.

    Parameters
    ----------
    since_fired_n : torch.Tensor, int64, (n,)
        Training tokens since each latent last fired.

    Returns
    -------
    torch.Tensor, float32, (4,)
        FVU, AuxK, mean L0 of the batch and the dead fraction before the step (:data:`LOG_COLUMNS`),
        left on the device.
    """
    dead_n = since_fired_n >= cfg.dead_tokens
    k_aux = cfg.auxk_latents(sae.d)
    with_aux = bool(k_aux) and bool(dead_n.any())  # one host sync a step; AuxK is 0 without dead latents
    values_BK, indices_BK, aux_values_BK, aux_indices_BK = sae.encode_sparse(x_BD, dead_n if with_aux else None, k_aux)
    x_hat_BD = sae.decode_sparse(values_BK, indices_BK)
    main = fvu(x_BD, x_hat_BD)
    if with_aux:
        aux = auxk_loss(sae, aux_values_BK, aux_indices_BK, (x_BD - x_hat_BD).detach())
    else:
        aux = torch.zeros_like(main)
    optimizer.zero_grad(set_to_none=True)
    (main + AUXK_COEF * aux).backward()
    sae.remove_parallel_grad()
    optimizer.step()
    sae.normalize_decoder()
    with torch.no_grad():
        active_BK = values_BK > 0
        fired_n = torch.zeros_like(dead_n)
        fired_n[indices_BK[active_BK]] = True
        since_fired_n.add_(x_BD.shape[0]).masked_fill_(fired_n, 0)
        l0 = active_BK.sum(dim=1, dtype=torch.float32).mean()
        return torch.stack([main.detach(), aux.detach(), l0, dead_n.float().mean()])


def _store_fingerprint(attrs: dict) -> str:
    """sha256 of a store's attributes (its provenance: model weights, dataset, sites, code)."""
    return hashlib.sha256(json.dumps(dict(attrs), sort_keys=True, default=str).encode()).hexdigest()


def resume_path(sae_path: str | Path) -> Path:
    """Where the training state of the SAE file ``sae_path`` is checkpointed: ``<sae_path>.resume``."""
    sae_path = Path(sae_path)
    return sae_path.with_name(sae_path.name + ".resume")


def _save_state(path: Path, state: dict) -> None:
    artefacts.save_torch(path, state, rule=RULE)


def _load_state(path: Path, provenance: dict) -> dict | None:
    """The checkpointed training state at ``path`` if it exists, passes its sha256 check, is readable and has
    this provenance; a state that fails the check or cannot be read is deleted (it is never resumed)."""
    if not path.is_file():
        return None
    try:
        state = artefacts.load_torch(path, rule=RULE)
    except (ValueError, OSError) as error:
        log.warning("discarding the training state %s and starting afresh: %s", path, error)
        artefacts.remove(path)
        return None
    stored = state.get("provenance") if isinstance(state, dict) else None
    if stored != provenance:
        changed = sorted(
            key for key in provenance if not isinstance(stored, dict) or stored.get(key) != provenance[key]
        )
        log.warning("training state %s has other settings (%s differ); starting afresh", path, ", ".join(changed))
        return None
    return state


def train_sae(
    store: str | Path,
    site: str,
    cfg: SAETrainConfig,
    sae_path: str | Path,
    log_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    provenance: dict | None = None,
) -> dict:
    """Train a top-k SAE on one site of an activation store, resuming a checkpointed state (module docstring).

    Parameters
    ----------
    store : path
        A published activation store holding ``site``.
    site : str
        A stored site (:func:`clipmech.stores.activations.site_activations`).
    cfg : SAETrainConfig
    sae_path : path
        The SAE file written at the end (:func:`clipmech.sae.model.save_sae`); the training state is
        checkpointed beside it (:func:`resume_path`).
    log_path : path
        The per-step log, a TSV of :data:`LOG_COLUMNS`.
    device : str or torch.device
        Where to train (float32).
    provenance : dict, optional
        JSON-like values identifying the run beyond the settings (model name, code hash): a checkpoint
        with other values is not resumed; recorded in the SAE file's meta.

    Returns
    -------
    dict
        The meta written into the SAE file: the settings, the site, the store, d, n, k_aux, the scaled
        learning rate, steps, the split (n_images, holdout, seed), the final FVU and dead fraction
        (means over the last 10 % of steps, and at the end), ``diverged`` (final FVU above ``max_fvu``) and
        ``provenance``.

    Raises
    ------
    ValueError
        For a site that is not stored, a tokens kind the store cannot give, a buffer smaller than a
        chunk, or an expansion that does not give an integer number of latents; or if training ends with a
        non-finite weight (the message names the settings; no SAE file is written).
    OSError
        If the SAE file or a training state cannot be written (a full device is named as such).
    """
    device = torch.device(device)
    sae_path, log_path = Path(sae_path), Path(log_path)
    ds = activations.open_store(store)
    n_images = ds.sizes["image"]
    train_images, holdout_images = split_images(n_images, cfg.holdout, cfg.seed)
    source = SiteTokens(ds, site, cfg.tokens, train_images)
    stream = ShuffleStream(source, cfg.batch_size, cfg.buffer_tokens, cfg.seed)
    d = source.d
    n_latents = cfg.latents(d)
    lr = scaled_lr(cfg.lr, n_latents)
    run = {
        "config": {key: value for key, value in asdict(cfg).items() if key != "max_fvu"},
        "site": site,
        "store": _store_fingerprint(ds.attrs),
        "extra": provenance or {},
    }
    sae = TopKSAE(d, n_latents, cfg.k, seed=cfg.seed).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS)
    since_fired_n = torch.zeros(n_latents, dtype=torch.int64, device=device)
    state_path = resume_path(sae_path)
    state = _load_state(state_path, run)
    if state is not None:
        try:
            sae.load_state_dict(state["sae"])
            optimizer.load_state_dict(state["optimizer"])
            since_fired_n.copy_(state["since_fired"])
            start, stats = int(state["step"]), list(state["stats"].to(device).unbind())
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
            log.warning(
                "discarding the training state %s (it does not fit this SAE: %s); starting afresh", state_path, error
            )
            artefacts.remove(state_path)
            state = None
            sae = TopKSAE(d, n_latents, cfg.k, seed=cfg.seed).to(device)
            optimizer = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS)
            since_fired_n.zero_()
        else:
            log.info("resuming SAE training %s after %d of %d steps", sae_path, start, cfg.steps)
    if state is None:
        start, stats = 0, []
    log.info(
        "SAE on %s (%s tokens of %d training images, %d tokens per epoch): d %d, n %d, k %d, k_aux %d, lr %.3g, "
        "%d steps of %d",
        site,
        cfg.tokens,
        len(train_images),
        source.n_tokens,
        d,
        n_latents,
        cfg.k,
        cfg.auxk_latents(d),
        lr,
        cfg.steps,
        cfg.batch_size,
    )
    batches = stream.batches(start)
    sae.train()
    for step in tqdm(range(start, cfg.steps), total=cfg.steps, initial=start, desc=f"SAE {site}", mininterval=10):
        x_BD = next(batches).to(device)
        if step == 0:
            sae.init_from_data(x_BD)
        stats.append(train_step(sae, optimizer, x_BD, since_fired_n, cfg))
        done = step + 1
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            _save_state(
                state_path,
                {
                    "provenance": run,
                    "step": done,
                    "sae": sae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "since_fired": since_fired_n,
                    "stats": torch.stack(stats).cpu(),
                },
            )
            fvu_, _, l0, dead = stats[-1].tolist()
            log.info("step %d: fvu %.4f, l0 %.2f, dead %.3f (checkpointed)", done, fvu_, l0, dead)
    table = pd.DataFrame(torch.stack(stats).cpu().double().numpy(), columns=LOG_COLUMNS[2:])
    table.insert(0, "tokens", np.arange(1, cfg.steps + 1) * cfg.batch_size)
    table.insert(0, "step", np.arange(1, cfg.steps + 1))
    tail = table.iloc[-max(1, cfg.steps // 10) :]
    settings = (
        f"site {site}, lr {cfg.lr:g} (scaled {lr:.3g}), k {cfg.k}, n_latents {n_latents}, k_aux {cfg.auxk_latents(d)}, "
        f"steps {cfg.steps}, batch_size {cfg.batch_size}, seed {cfg.seed}"
    )
    bad = non_finite_parameters(sae)
    if bad:
        artefacts.remove(state_path)
        raise ValueError(
            f"SAE training for {sae_path} diverged to non-finite weights ({', '.join(bad)}; last FVU "
            f"{table['fvu'].iloc[-1]:g}) with {settings}: no SAE file is written; lower lr (or change k or "
            "batch_size) and run rule train_sae again"
        )
    final_fvu = float(tail["fvu"].mean())
    diverged = not final_fvu <= cfg.max_fvu
    if diverged:
        log.warning(
            "SAE %s diverged: final FVU %.4g exceeds max_fvu %g (%s); publishing it with diverged: true",
            sae_path,
            final_fvu,
            cfg.max_fvu,
            settings,
        )
    meta = {
        **asdict(cfg),
        "site": site,
        "store": str(store),
        "d": d,
        "n_latents": n_latents,
        "k_aux_used": cfg.auxk_latents(d),
        "lr_scaled": lr,
        "steps": cfg.steps,
        "n_images": n_images,
        "n_train_images": len(train_images),
        "holdout_images": holdout_images.tolist(),
        "train_tokens_per_epoch": source.n_tokens,
        "final_fvu": final_fvu,
        "diverged": diverged,
        "final_dead_fraction": float(table["dead_fraction"].iloc[-1]),
        "final_l0": float(tail["l0"].mean()),
        "provenance": provenance or {},
    }
    save_sae(sae_path, sae.eval(), meta, rule=RULE)
    tables.write_table(table, log_path)
    artefacts.remove(state_path)
    log.info(
        "wrote %s: fvu %.4f, l0 %.2f, dead %.3f",
        sae_path,
        meta["final_fvu"],
        meta["final_l0"],
        table["dead_fraction"].iloc[-1],
    )
    return meta
