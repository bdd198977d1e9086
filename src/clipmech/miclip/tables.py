"""The MiCLIP tables (methods.md Sec. 9; MiCLIP Tables 1, 2, 4): rows of descriptions, localisations and
interventions, and their summaries.

Methods (:data:`METHODS`): ``miclip`` (loss ``both``), ``miclip_input``, ``miclip_output`` (the ablations),
``act_values``, ``clip_dissect``, ``netdissect`` and ``random``. Seeded methods (:data:`SEEDED`) have a row
per seed; the others are computed once, with seed 0, and count with sd 0 in the summaries (their value is
repeated for each seed in the paired t-tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

#: Every method, in table order; the loss of each MiCLIP method.
METHODS = ("miclip", "miclip_input", "miclip_output", "act_values", "clip_dissect", "netdissect", "random")
MICLIP_LOSS = {"miclip": "both", "miclip_input": "input", "miclip_output": "output"}
SEEDED = ("miclip", "miclip_input", "miclip_output", "random")
#: Methods that describe units over the word list too (the others only over the Shapes concepts).
WORD_METHODS = ("miclip", "miclip_input", "miclip_output", "clip_dissect")

DESCRIPTION_COLUMNS = ("unit", "method", "seed", "vocabulary", "rank", "concept", "score")
LOCALISATION_COLUMNS = ("concept", "method", "seed", "rank", "unit", "score")
INTERVENTION_COLUMNS = (
    "concept",
    "method",
    "seed",
    "intervention",
    "beta",
    "n_images",
    "accuracy_before",
    "accuracy_after",
    "delta_acc",
)


def description_rows(method: str, seed: int, vocabulary: str, names: list[str], index_UK, score_UK) -> pd.DataFrame:
    """Rows of :data:`DESCRIPTION_COLUMNS` from :func:`clipmech.miclip.units.describe` output."""
    n_units, tau = index_UK.shape
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n_units), tau),
            "method": method,
            "seed": seed,
            "vocabulary": vocabulary,
            "rank": np.tile(np.arange(1, tau + 1), n_units),
            "concept": np.asarray(names, dtype=object)[index_UK.reshape(-1)],
            "score": score_UK.reshape(-1),
        },
        columns=list(DESCRIPTION_COLUMNS),
    )


def localisation_rows(method: str, seed: int, concepts: list[str], index_CK, score_CK) -> pd.DataFrame:
    """Rows of :data:`LOCALISATION_COLUMNS` from :func:`clipmech.miclip.units.localise` output."""
    n_concepts, tau = index_CK.shape
    return pd.DataFrame(
        {
            "concept": np.repeat(np.asarray(concepts, dtype=object), tau),
            "method": method,
            "seed": seed,
            "rank": np.tile(np.arange(1, tau + 1), n_concepts),
            "unit": index_CK.reshape(-1),
            "score": score_CK.reshape(-1),
        },
        columns=list(LOCALISATION_COLUMNS),
    )


#: The columns of :func:`delta_table`.
DELTA_COLUMNS = ("method", "intervention", "beta", "effect", "n_seeds", "delta_acc_mean", "delta_acc_sd", "p_value")


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def description_accuracy(
    descriptions: pd.DataFrame,
    truth_U: np.ndarray,
    concepts: list[str],
    shapes_text_CE: np.ndarray,
    word_index: dict[str, int],
    word_text_AE: np.ndarray,
    vocabulary: str = "shapes",
) -> pd.DataFrame:
    """Table 1's role: per method (and seed) top-1 accuracy against the ground truth and the CLIP scores.

    The evaluated units are those with a ground truth (``truth_U >= 0``). Accuracy: the fraction whose
    top-1 Shapes description is the ground-truth concept. CLIP score: the cosine, in the reference text
    space, between the embedding of the top-1 description and that of the ground-truth concept's prompt,
    averaged over the units; over the Shapes concepts (``clip_score_shapes``) and over the words
    (``clip_score_words``, NaN for methods without word descriptions).

    Parameters
    ----------
    descriptions : pandas.DataFrame
        :data:`DESCRIPTION_COLUMNS` rows.
    truth_U : numpy.ndarray, int, (U,)
        Index into ``concepts`` (:func:`clipmech.miclip.baselines.ground_truth`), -1 for none.
    concepts : list of str
        The Shapes concepts (``FEATURES``).
    shapes_text_CE, word_text_AE : numpy.ndarray, (16, E), (A, E)
        L2-normalised reference text embeddings of the concepts' prompts and of the words.
    word_index : dict of str to int
        Word -> row of ``word_text_AE``.
    vocabulary : str
        The descriptions' vocabulary of ``concepts``: ``shapes``, or ``concepts`` for a natural-image
        dataset's (whose accuracy and ``clip_score_shapes`` are then over its concepts).

    Returns
    -------
    pandas.DataFrame
        ``method, seed, n_units, accuracy, clip_score_shapes, clip_score_words``, one row per method x seed.
    """
    valid = np.flatnonzero(np.asarray(truth_U) >= 0)
    concept_index = {c: i for i, c in enumerate(concepts)}
    truth_text = shapes_text_CE[np.asarray(truth_U)[valid]]
    top1 = descriptions[descriptions["rank"] == 1]
    rows = []
    for (method, seed), group in top1.groupby(["method", "seed"], sort=False):
        shapes_top = group[group["vocabulary"] == vocabulary].set_index("unit")["concept"].reindex(valid)
        predicted = shapes_top.map(concept_index).to_numpy(dtype=np.int64)
        row = {
            "method": method,
            "seed": int(seed),
            "n_units": int(valid.size),
            "accuracy": float(np.mean(predicted == np.asarray(truth_U)[valid])) if valid.size else np.nan,
            "clip_score_shapes": float(np.mean(np.sum(shapes_text_CE[predicted] * truth_text, axis=1)))
            if valid.size
            else np.nan,
            "clip_score_words": np.nan,
        }
        words = group[group["vocabulary"] == "words"]
        if len(words) and valid.size:
            chosen = words.set_index("unit")["concept"].reindex(valid).map(word_index).to_numpy(dtype=np.int64)
            row["clip_score_words"] = float(np.mean(np.sum(word_text_AE[chosen] * truth_text, axis=1)))
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["method", "seed", "n_units", "accuracy", "clip_score_shapes", "clip_score_words"]
    )


def summarise_descriptions(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of :func:`description_accuracy` rows, one row per method (Table 1)."""
    rows = []
    for method, group in per_seed.groupby("method", sort=False):
        row = {"method": method, "n_seeds": len(group), "n_units": int(group["n_units"].iloc[0])}
        for column in ("accuracy", "clip_score_shapes", "clip_score_words"):
            row[f"{column}_mean"], row[f"{column}_sd"] = _mean_sd(group[column].dropna())
        rows.append(row)
    return pd.DataFrame(rows)


def effect(intervention: str, beta: float) -> str:
    """``enhance`` (scale beta > 1, add beta > 0), ``remove`` (scale beta < 1, add beta < 0) or ``none``."""
    neutral = 1.0 if intervention == "scale" else 0.0
    return "enhance" if beta > neutral else "remove" if beta < neutral else "none"


def seed_deltas(interventions: pd.DataFrame) -> pd.DataFrame:
    """Delta Acc per method, seed, intervention and beta: the mean over concepts (NaN concepts skipped)."""
    return (
        interventions.groupby(["method", "seed", "intervention", "beta"], sort=False)["delta_acc"].mean().reset_index()
    )


def delta_table(interventions: pd.DataFrame, seeds: list[int], reference: str = "miclip") -> pd.DataFrame:
    """Table 2 for one unit set: per method, intervention and beta, the mean and sd over seeds of Delta Acc
    (percentage points) and the one-tailed paired t-test (``scipy.stats.ttest_rel``) of ``reference``
    against the method across seeds: greater for an enhancing intervention, less for a removing one
    (NaN with fewer than 2 seeds, or when the differences are constant).

    Returns
    -------
    pandas.DataFrame
        ``method, intervention, beta, effect, n_seeds, delta_acc_mean, delta_acc_sd, p_value``.
    """
    deltas = seed_deltas(interventions)
    rows = []
    for (intervention, beta), block in deltas.groupby(["intervention", "beta"], sort=False):
        per_method = {
            method: group.set_index("seed")["delta_acc"] for method, group in block.groupby("method", sort=False)
        }
        ref = per_method.get(reference)
        for method, values in per_method.items():
            repeated = values.reindex(seeds) if len(values) > 1 else pd.Series(values.iloc[0], index=seeds)
            mean, sd = _mean_sd(values.to_numpy())
            p_value = np.nan
            kind = effect(intervention, beta)
            if method != reference and ref is not None and len(seeds) > 1 and kind != "none":
                diff = ref.reindex(seeds).to_numpy() - repeated.to_numpy()
                if np.isfinite(diff).all() and np.ptp(diff) > 0:
                    alternative = "greater" if kind == "enhance" else "less"
                    p_value = float(stats.ttest_rel(ref.reindex(seeds), repeated, alternative=alternative).pvalue)
            rows.append(
                {
                    "method": method,
                    "intervention": intervention,
                    "beta": float(beta),
                    "effect": kind,
                    "n_seeds": int(len(values)),
                    "delta_acc_mean": mean,
                    "delta_acc_sd": sd,
                    "p_value": p_value,
                }
            )
    return pd.DataFrame(rows, columns=list(DELTA_COLUMNS))


def ablation_table(description_summary: pd.DataFrame, deltas: pd.DataFrame) -> pd.DataFrame:
    """Table 4: the MiCLIP loss variants (both, input, output) side by side: description accuracy, CLIP
    scores and Delta Acc of every intervention (mean and sd over seeds), one row per loss."""
    rows = []
    for method, loss in MICLIP_LOSS.items():
        row = {"loss": loss}
        described = description_summary[description_summary["method"] == method]
        for column in ("accuracy", "clip_score_shapes", "clip_score_words"):
            for stat in ("mean", "sd"):
                row[f"{column}_{stat}"] = float(described[f"{column}_{stat}"].iloc[0]) if len(described) else np.nan
        for item in deltas[deltas["method"] == method].itertuples(index=False):
            label = f"{item.intervention}_{item.beta:g}"
            row[f"delta_{label}_mean"], row[f"delta_{label}_sd"] = item.delta_acc_mean, item.delta_acc_sd
        rows.append(row)
    return pd.DataFrame(rows)
