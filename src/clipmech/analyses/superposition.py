"""Superposition of features in selective units vs their separability in the embedding space.

Implements methods.md Sec. 3 (shapes paper, poster section "Effects of superposition on embedding
space"): for pairs of Shapes features (f1, f2),

* a superposition score S(f1, f2) from the feature affinities of the M lowest-entropy units
  (``ratio``: fraction of units with a_f1 + a_f2 > threshold, the reference code's score;
  ``joint``: mean of min(a_f1, a_f2), high only where one unit responds to both features);
* the separability of the images containing f1 but not f2 from those containing f2 but not f1 in
  the L2-normalised image-embedding space: the centroid distance D and the misclassification rate M
  of a nearest-centroid classifier, on the full embedding and on a PCA keeping 90 % of the
  variance;
* Pearson and Spearman correlations of S with D and with M, with p-values and bootstrap 95 %
  confidence intervals.

Choices (configurable, defaults stated):

* M is estimated by exact leave-one-out (``cv="loo"``, default; deterministic). Leaving image i out
  of its class c (n_c images, centroid mu_c) moves that centroid to
  (n_c mu_c - x_i) / (n_c - 1), so x_i - mu_c^(-i) = n_c / (n_c - 1) (x_i - mu_c): the leave-one-out
  nearest-centroid decision is computed in closed form, identical to scikit-learn's
  ``NearestCentroid`` refitted under ``LeaveOneOut`` (checked in the tests) at a fraction of the
  cost. ``cv="holdout"`` fits ``NearestCentroid`` on a stratified, seeded split and scores the
  held-out fraction.
* The PCA is fitted on all images (``pca_fit="all"``, default), so every pair is measured in one
  common coordinate system and the D values of different pairs are comparable; ``pca_fit="pair"``
  fits it on the two classes of the pair only. The PCA is unsupervised, so fitting it before the
  cross-validation leaks no labels.
* Pairs whose classes hold fewer than ``min_images`` images get NaN separabilities and the status
  ``too_few_images``; the class sizes are always reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid

from clipmech.analyses.selectivity import entropy
from clipmech.data.shapes import FEATURE_TYPES, FEATURES

CV_METHODS = ("loo", "holdout")
PCA_FITS = ("all", "pair")
CORRELATION_METHODS = ("pearson", "spearman")
BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")
SCORE_COLUMNS = ("S_ratio", "S_joint")
SEPARABILITY_COLUMNS = ("D_full", "M_full", "D_pca", "M_pca")

_FEATURE_INDEX = {feature: f for f, feature in enumerate(FEATURES)}


def feature_pairs(cross_type: bool = False) -> list[tuple[str, str]]:
    """Enumerate the feature pairs of methods.md Sec. 3.

    Parameters
    ----------
    cross_type : bool, default False
        Also include pairs of features of different types (shape-colour, ...).

    Returns
    -------
    list of (str, str)
        Unordered pairs (f1, f2), f1 before f2 in ``clipmech.data.shapes.FEATURES`` order. Same-type
        pairs come first, grouped by type: 10 shape, 15 colour and 10 position pairs (35); with
        ``cross_type`` the 85 cross-type pairs follow (120 in all).
    """
    same = [
        (f1, f2)
        for kind in dict.fromkeys(FEATURE_TYPES)
        for f1, f2 in combinations([f for f, t in zip(FEATURES, FEATURE_TYPES) if t == kind], 2)
    ]
    if not cross_type:
        return same
    cross = [
        (f1, f2)
        for f1, f2 in combinations(FEATURES, 2)
        if FEATURE_TYPES[_FEATURE_INDEX[f1]] != FEATURE_TYPES[_FEATURE_INDEX[f2]]
    ]
    return same + cross


def pair_type(f1: str, f2: str) -> str:
    """Type of a feature pair: the shared type (``shape``, ``colour``, ``position``) or ``cross``."""
    t1, t2 = FEATURE_TYPES[_feature_index(f1)], FEATURE_TYPES[_feature_index(f2)]
    return t1 if t1 == t2 else "cross"


def _feature_index(feature: str) -> int:
    if feature not in _FEATURE_INDEX:
        raise ValueError(f"unknown feature {feature!r}; allowed features are: {', '.join(FEATURES)}")
    return _FEATURE_INDEX[feature]


def _check_affinity(affinity_UF: np.ndarray) -> np.ndarray:
    affinity_UF = np.asarray(affinity_UF, dtype=np.float64)
    if affinity_UF.ndim != 2 or affinity_UF.shape[1] != len(FEATURES):
        raise ValueError(f"affinity_UF must have shape (units, {len(FEATURES)}), got {affinity_UF.shape}")
    if not np.all(np.isfinite(affinity_UF)) or np.any(affinity_UF < 0):
        raise ValueError("affinity_UF must be finite and non-negative")
    row_sums = affinity_UF.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=1e-6):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise ValueError(f"affinity_UF rows must sum to 1; unit {worst} sums to {row_sums[worst]:.6g}")
    return affinity_UF


def lowest_entropy_units(affinity_UF: np.ndarray, n_units: int) -> np.ndarray:
    """Indices of the units with the lowest affinity entropy (methods.md Sec. 2-3).

    Parameters
    ----------
    affinity_UF : numpy.ndarray, float, (U, 16)
        Feature affinities a_i of Algorithm 1 of the shapes paper; rows sum to 1.
    n_units : int
        M, the number of units to keep (paper: 1000). If U < M all U units are returned.

    Returns
    -------
    numpy.ndarray, int64, (min(M, U),)
        Unit indices by ascending entropy H = -sum_i a_i ln a_i (nats, ``clipmech.analyses.selectivity.entropy``);
        ties keep index order.

    Raises
    ------
    ValueError
        If ``affinity_UF`` is not (U, 16), non-negative, with rows summing to 1, or ``n_units < 1``.
    """
    affinity_UF = _check_affinity(affinity_UF)
    if n_units < 1:
        raise ValueError(f"n_units must be >= 1, got {n_units}")
    return np.argsort(entropy(affinity_UF), kind="stable")[:n_units]


def superposition_scores(
    affinity_UF: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    *,
    n_units: int = 1000,
    threshold: float = 0.3,
) -> pd.DataFrame:
    """Superposition scores S(f1, f2) of methods.md Sec. 3 over the M lowest-entropy units.

    Parameters
    ----------
    affinity_UF : numpy.ndarray, float, (U, 16)
        Feature affinities (rows sum to 1), features in ``clipmech.data.shapes.FEATURES`` order.
    pairs : sequence of (str, str)
        Feature pairs, e.g. from :func:`feature_pairs`.
    n_units : int, default 1000
        M, the number of lowest-entropy units used (all units if fewer exist).
    threshold : float, default 0.3
        Threshold of the ``ratio`` score (reference code: 0.3), in affinity units, in [0, 2).

    Returns
    -------
    pandas.DataFrame
        One row per pair with columns ``f1, f2, type, n_units, S_ratio, S_joint``:
        ``S_ratio`` = fraction of the units with a_f1 + a_f2 > threshold;
        ``S_joint`` = mean over the units of min(a_f1, a_f2) (dimensionless, in [0, 0.5]).

    Raises
    ------
    ValueError
        On a malformed affinity matrix, an unknown feature name, a pair of identical features, or
        a threshold outside [0, 2).
    """
    if not 0.0 <= threshold < 2.0:
        raise ValueError(f"threshold must lie in [0, 2), got {threshold}")
    selected_UF = _check_affinity(affinity_UF)[lowest_entropy_units(affinity_UF, n_units)]
    rows = []
    for f1, f2 in pairs:
        i1, i2 = _feature_index(f1), _feature_index(f2)
        if i1 == i2:
            raise ValueError(f"a pair needs two different features, got ({f1!r}, {f2!r})")
        a1_U, a2_U = selected_UF[:, i1], selected_UF[:, i2]
        rows.append(
            {
                "f1": f1,
                "f2": f2,
                "type": pair_type(f1, f2),
                "n_units": selected_UF.shape[0],
                "S_ratio": float(np.mean(a1_U + a2_U > threshold)),
                "S_joint": float(np.mean(np.minimum(a1_U, a2_U))),
            }
        )
    return pd.DataFrame(rows, columns=["f1", "f2", "type", "n_units", "S_ratio", "S_joint"])


def separability(
    x_AE: np.ndarray,
    x_BE: np.ndarray,
    *,
    cv: str = "loo",
    test_fraction: float = 0.3,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Centroid distance D and nearest-centroid misclassification rate M of two point clouds.

    methods.md Sec. 3 (shapes paper, "Cluster-Center Distance" and "Misclassification Rate").

    Parameters
    ----------
    x_AE, x_BE : numpy.ndarray, float, (n_A, E) and (n_B, E)
        The two classes, in whatever space D and M are to be measured in (no normalisation here).
    cv : {"loo", "holdout"}, default "loo"
        ``loo``: exact leave-one-out (closed form, see the module docstring; a tie between the two
        centroids counts as an error). ``holdout``: ``NearestCentroid`` fitted on a stratified
        split, M = error rate on the held-out ``test_fraction``.
    test_fraction : float, default 0.3
        Held-out fraction for ``holdout``, in (0, 1).
    rng : numpy.random.Generator, optional
        Seeds the ``holdout`` split; required for it, unused by ``loo``.

    Returns
    -------
    D : float
        Euclidean distance between the class centroids (units of the input space).
    M : float
        Misclassification rate in [0, 1] (about 0.5 for identical distributions; leave-one-out is
        slightly above 0.5 there, since removing a point pulls its own centroid away from it).

    Raises
    ------
    ValueError
        If a class has fewer than 2 images, the widths differ, ``cv`` is unknown, ``holdout`` is
        asked without ``rng``, or the split would leave fewer than 2 images for testing or
        training.
    """
    x_AE, x_BE = np.asarray(x_AE, dtype=np.float64), np.asarray(x_BE, dtype=np.float64)
    if x_AE.ndim != 2 or x_BE.ndim != 2 or x_AE.shape[1] != x_BE.shape[1]:
        raise ValueError(f"x_AE and x_BE must be 2-D with equal widths, got {x_AE.shape} and {x_BE.shape}")
    if min(len(x_AE), len(x_BE)) < 2:
        raise ValueError(f"each class needs at least 2 images, got {len(x_AE)} and {len(x_BE)}")
    mu_A, mu_B = x_AE.mean(axis=0), x_BE.mean(axis=0)
    distance = float(np.linalg.norm(mu_A - mu_B))
    if cv == "loo":
        errors = 0
        for x_nE, mu_own, mu_other in ((x_AE, mu_A, mu_B), (x_BE, mu_B, mu_A)):
            n = len(x_nE)
            d_own_n = n / (n - 1) * np.linalg.norm(x_nE - mu_own, axis=1)
            d_other_n = np.linalg.norm(x_nE - mu_other, axis=1)
            errors += int(np.sum(d_own_n >= d_other_n))
        return distance, errors / (len(x_AE) + len(x_BE))
    if cv == "holdout":
        if rng is None:
            raise ValueError("cv='holdout' needs a numpy.random.Generator `rng` for its split")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        n_total = len(x_AE) + len(x_BE)
        n_test = int(np.ceil(test_fraction * n_total))
        if n_test < 2 or n_total - n_test < 2:
            raise ValueError(
                f"a {test_fraction} hold-out of {n_total} images leaves {n_test} for testing and "
                f"{n_total - n_test} for training; both need at least 2"
            )
        x_NE = np.concatenate([x_AE, x_BE])
        y_N = np.repeat([0, 1], [len(x_AE), len(x_BE)])
        x_train, x_test, y_train, y_test = train_test_split(
            x_NE, y_N, test_size=n_test, stratify=y_N, random_state=int(rng.integers(2**32 - 1))
        )
        predicted = NearestCentroid().fit(x_train, y_train).predict(x_test)
        return distance, float(np.mean(predicted != y_test))
    raise ValueError(f"unknown cv {cv!r}; allowed: {', '.join(CV_METHODS)}")


def normalise_rows(emb_NE: np.ndarray) -> np.ndarray:
    """L2-normalise embeddings row-wise (float64, (N, E)); raises ValueError on a zero or
    non-finite row (its index is named)."""
    emb_NE = np.asarray(emb_NE, dtype=np.float64)
    if emb_NE.ndim != 2:
        raise ValueError(f"emb_NE must be 2-D (images, width), got shape {emb_NE.shape}")
    norm_N = np.linalg.norm(emb_NE, axis=1)
    bad = np.flatnonzero(~np.isfinite(norm_N) | (norm_N == 0))
    if bad.size:
        raise ValueError(f"embedding of image {int(bad[0])} has zero or non-finite norm")
    return emb_NE / norm_N[:, None]


def _unmeasured_row(f1: str, f2: str, n_f1_only: int, n_f2_only: int) -> dict:
    """A pair's row of the separability table before it is measured: status ``too_few_images``, NaN measures."""
    return {
        "f1": f1,
        "f2": f2,
        "type": pair_type(f1, f2),
        "n_f1_only": n_f1_only,
        "n_f2_only": n_f2_only,
        "status": "too_few_images",
        "D_full": np.nan,
        "M_full": np.nan,
        "D_pca": np.nan,
        "M_pca": np.nan,
        "n_pca_components": 0,
    }


def separability_table(
    emb_NE: np.ndarray,
    counts_NF: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    *,
    variance_kept: float = 0.9,
    pca_fit: str = "all",
    cv: str = "loo",
    test_fraction: float = 0.3,
    min_images: int = 5,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Separability D and M of every pair, in the full and the PCA embedding (methods.md Sec. 3).

    For a pair (f1, f2) the classes are the images with at least one object carrying f1 and none
    carrying f2, and vice versa.

    Parameters
    ----------
    emb_NE : numpy.ndarray, float, (N, E)
        Final image embeddings; L2-normalised here (the "normalised embedding space").
    counts_NF : numpy.ndarray, (N, 16)
        Number of objects with each feature per image (``clipmech.data.shapes.feature_counts``).
    pairs : sequence of (str, str)
        Feature pairs, e.g. from :func:`feature_pairs`.
    variance_kept : float, default 0.9
        Fraction of variance the PCA keeps (``sklearn.decomposition.PCA(n_components=...)``).
    pca_fit : {"all", "pair"}, default "all"
        Fit the PCA once on all N images, or per pair on that pair's images.
    cv, test_fraction, rng
        Passed to :func:`separability`; ``holdout`` draws one split seed per pair from ``rng``
        (in pair order), the same split serving the full and the PCA space.
    min_images : int, default 5
        Pairs whose smaller class has fewer images get NaN D and M and status ``too_few_images``.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``f1, f2, type, n_f1_only, n_f2_only, status, D_full, M_full, D_pca,
        M_pca, n_pca_components`` (status ``ok`` or ``too_few_images``; ``n_pca_components`` is
        the dimension the PCA keeps, 0 for skipped pairs). D is in units of the normalised
        embedding (at most 2); M is a rate in [0, 1].

    Raises
    ------
    ValueError
        On mismatched shapes, negative counts, unknown ``pca_fit``/``cv``, ``min_images < 2``,
        ``variance_kept`` outside (0, 1), or a hold-out split that ``min_images`` cannot guarantee.
    """
    x_NE = normalise_rows(emb_NE)
    counts_NF = np.asarray(counts_NF)
    if counts_NF.shape != (x_NE.shape[0], len(FEATURES)):
        raise ValueError(
            f"counts_NF must have shape (images, {len(FEATURES)}) = ({x_NE.shape[0]}, {len(FEATURES)}), "
            f"got {counts_NF.shape}"
        )
    if np.any(counts_NF < 0):
        raise ValueError("counts_NF must be non-negative")
    if pca_fit not in PCA_FITS:
        raise ValueError(f"unknown pca_fit {pca_fit!r}; allowed: {', '.join(PCA_FITS)}")
    if cv not in CV_METHODS:
        raise ValueError(f"unknown cv {cv!r}; allowed: {', '.join(CV_METHODS)}")
    if min_images < 2:
        raise ValueError(f"min_images must be >= 2, got {min_images}")
    if not 0.0 < variance_kept < 1.0:
        raise ValueError(f"variance_kept must lie in (0, 1), got {variance_kept}")
    if cv == "holdout":
        if rng is None:
            raise ValueError("cv='holdout' needs a numpy.random.Generator `rng` for its splits")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        n_test = int(np.ceil(test_fraction * 2 * min_images))
        if n_test < 2 or 2 * min_images - n_test < 2:
            raise ValueError(
                f"min_images={min_images} with test_fraction={test_fraction} can leave fewer than 2 "
                "images for testing or training; raise min_images or change test_fraction"
            )

    def project(fit_NE: np.ndarray) -> PCA:
        return PCA(n_components=variance_kept, svd_solver="full").fit(fit_NE)

    if pca_fit == "all":
        pca_all = project(x_NE)
        z_all_NK = pca_all.transform(x_NE)

    rows = []
    for f1, f2 in pairs:
        i1, i2 = _feature_index(f1), _feature_index(f2)
        if i1 == i2:
            raise ValueError(f"a pair needs two different features, got ({f1!r}, {f2!r})")
        has1_N, has2_N = counts_NF[:, i1] > 0, counts_NF[:, i2] > 0
        a_N, b_N = has1_N & ~has2_N, has2_N & ~has1_N
        row = _unmeasured_row(f1, f2, int(a_N.sum()), int(b_N.sum()))
        if min(row["n_f1_only"], row["n_f2_only"]) >= min_images:
            if pca_fit == "all":
                pca, z_NK = pca_all, z_all_NK
            else:
                pca = project(x_NE[a_N | b_N])
                z_NK = pca.transform(x_NE)
            seed = int(rng.integers(2**63 - 1)) if cv == "holdout" else None
            for space, z_NE in (("full", x_NE), ("pca", z_NK)):
                split_rng = None if seed is None else np.random.default_rng(seed)
                d, m = separability(z_NE[a_N], z_NE[b_N], cv=cv, test_fraction=test_fraction, rng=split_rng)
                row[f"D_{space}"], row[f"M_{space}"] = d, m
            row["status"], row["n_pca_components"] = "ok", int(pca.n_components_)
        rows.append(row)
    return pd.DataFrame(rows)


def streamed_separability_table(
    chunks: Callable[[], Iterable[np.ndarray]],
    counts_NF: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    *,
    variance_kept: float = 0.9,
    min_images: int = 5,
) -> pd.DataFrame:
    """:func:`separability_table` with its defaults (``cv="loo"``, ``pca_fit="all"``), from embeddings read a
    chunk of images at a time (methods.md Sec. 3.3), so that memory holds one chunk, E x E sums and per-image
    scalars.

    Three passes over the chunks: the mean and every class's sum (the centroids); the centred scatter matrix,
    whose eigenvectors are the PCA's directions (eigenvalues descending; the components kept as scikit-learn's
    ``PCA(n_components=variance_kept)`` keeps them, from the cumulative explained-variance ratio); each
    image's leave-one-out distances to its own and the other centroid of every pair it belongs to, in the full
    and the PCA space (differences projected; a distance in the PCA space depends on the kept subspace only,
    not on the signs or the rotation of its directions). The result equals :func:`separability_table`'s up to
    float64 rounding (D to 1e-9 in the tests; M, a count of distance comparisons, exactly unless two distances
    tie within rounding).

    Parameters
    ----------
    chunks : callable
        Returns a fresh iterable of float (B, E) embedding chunks, all N images in order (called three times).
    counts_NF, pairs, variance_kept, min_images
        As :func:`separability_table`.

    Returns
    -------
    pandas.DataFrame
        As :func:`separability_table`.

    Raises
    ------
    ValueError
        On counts that are not (N, 16) for the N images of the chunks or negative, ``min_images < 2``,
        ``variance_kept`` outside (0, 1), a pair of equal features, or a zero or non-finite embedding.
    """
    counts_NF = np.asarray(counts_NF)
    if counts_NF.ndim != 2 or counts_NF.shape[1] != len(FEATURES) or np.any(counts_NF < 0):
        raise ValueError(f"counts_NF must be non-negative of shape (images, {len(FEATURES)}), got {counts_NF.shape}")
    if min_images < 2:
        raise ValueError(f"min_images must be >= 2, got {min_images}")
    if not 0.0 < variance_kept < 1.0:
        raise ValueError(f"variance_kept must lie in (0, 1), got {variance_kept}")
    members = []  # per pair: (a_N, b_N)
    for f1, f2 in pairs:
        i1, i2 = _feature_index(f1), _feature_index(f2)
        if i1 == i2:
            raise ValueError(f"a pair needs two different features, got ({f1!r}, {f2!r})")
        has1_N, has2_N = counts_NF[:, i1] > 0, counts_NF[:, i2] > 0
        members.append((has1_N & ~has2_N, has2_N & ~has1_N))
    n_images = counts_NF.shape[0]

    def normalised():
        first = 0
        for chunk in chunks():
            x_BE = normalise_rows(chunk)
            if first + len(x_BE) > n_images:
                raise ValueError(f"the embeddings hold over {n_images} images but counts_NF has {n_images} rows")
            yield slice(first, first + len(x_BE)), x_BE
            first += len(x_BE)
        if first != n_images:
            raise ValueError(f"the embeddings hold {first} images but counts_NF has {n_images} rows")

    total_E, sums = None, None
    for rows, x_BE in normalised():
        if total_E is None:
            total_E = np.zeros(x_BE.shape[1])
            sums = np.zeros((len(pairs), 2, x_BE.shape[1]))
        total_E += x_BE.sum(axis=0)
        for p, (a_N, b_N) in enumerate(members):
            sums[p, 0] += x_BE[a_N[rows]].sum(axis=0)
            sums[p, 1] += x_BE[b_N[rows]].sum(axis=0)
    mean_E = total_E / n_images
    scatter_EE = np.zeros((mean_E.size, mean_E.size))
    for _, x_BE in normalised():
        centred_BE = x_BE - mean_E
        scatter_EE += centred_BE.T @ centred_BE
    variance_E, vectors_EE = np.linalg.eigh(scatter_EE / (n_images - 1))
    variance_E, vectors_EE = np.clip(variance_E[::-1], 0.0, None), vectors_EE[:, ::-1]
    n_components = int(np.searchsorted(np.cumsum(variance_E / variance_E.sum()), variance_kept, side="right") + 1)
    components_EK = vectors_EE[:, :n_components]
    sizes_P2 = np.array([[a_N.sum(), b_N.sum()] for a_N, b_N in members], dtype=np.int64).reshape(-1, 2)
    measured = sizes_P2.min(axis=1) >= min_images
    centroids_P2E = sums / np.maximum(sizes_P2, 1)[:, :, None]
    errors_P2 = np.zeros((len(pairs), 2), dtype=np.int64)  # full, pca
    for rows, x_BE in normalised():
        for p in np.flatnonzero(measured):
            for own, in_class_N in enumerate(members[p]):
                x_nE = x_BE[in_class_N[rows]]
                n = sizes_P2[p, own]
                own_nE, other_nE = x_nE - centroids_P2E[p, own], x_nE - centroids_P2E[p, 1 - own]
                for space, project in enumerate((lambda v: v, lambda v: v @ components_EK)):
                    d_own = n / (n - 1) * np.linalg.norm(project(own_nE), axis=1)
                    errors_P2[p, space] += int(np.sum(d_own >= np.linalg.norm(project(other_nE), axis=1)))
    rows_out = []
    for p, (f1, f2) in enumerate(pairs):
        row = _unmeasured_row(f1, f2, int(sizes_P2[p, 0]), int(sizes_P2[p, 1]))
        if measured[p]:
            difference_E = centroids_P2E[p, 0] - centroids_P2E[p, 1]
            row["D_full"] = float(np.linalg.norm(difference_E))
            row["D_pca"] = float(np.linalg.norm(difference_E @ components_EK))
            row["M_full"], row["M_pca"] = (errors_P2[p] / sizes_P2[p].sum()).tolist()
            row["status"], row["n_pca_components"] = "ok", n_components
        rows_out.append(row)
    return pd.DataFrame(rows_out)


def superposition_pair_table(
    affinity_UF: np.ndarray,
    emb_NE: np.ndarray | Callable[[], Iterable[np.ndarray]],
    counts_NF: np.ndarray,
    *,
    n_units: int = 1000,
    threshold: float = 0.3,
    cross_type: bool = False,
    variance_kept: float = 0.9,
    pca_fit: str = "all",
    cv: str = "loo",
    test_fraction: float = 0.3,
    min_images: int = 5,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """The pair table of methods.md Sec. 3: superposition scores and separabilities per pair.

    Combines :func:`feature_pairs`, :func:`superposition_scores` and :func:`separability_table`
    (see them for the parameters, shapes and errors). ``emb_NE`` is the (N, E) embeddings, or a callable
    returning a fresh iterable of their chunks in image order: then with ``cv="loo"`` and ``pca_fit="all"``
    the separabilities are streamed (:func:`streamed_separability_table`), otherwise the chunks are
    concatenated first.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``f1, f2, type, n_units, S_ratio, S_joint, n_f1_only, n_f2_only, status,
        D_full, M_full, D_pca, M_pca, n_pca_components``.
    """
    pairs = feature_pairs(cross_type)
    scores = superposition_scores(affinity_UF, pairs, n_units=n_units, threshold=threshold)
    if callable(emb_NE) and cv == "loo" and pca_fit == "all":
        separations = streamed_separability_table(
            emb_NE, counts_NF, pairs, variance_kept=variance_kept, min_images=min_images
        )
        return scores.merge(separations, on=["f1", "f2", "type"], how="left", validate="one_to_one")
    if callable(emb_NE):
        emb_NE = np.concatenate(list(emb_NE()))
    separations = separability_table(
        emb_NE,
        counts_NF,
        pairs,
        variance_kept=variance_kept,
        pca_fit=pca_fit,
        cv=cv,
        test_fraction=test_fraction,
        min_images=min_images,
        rng=rng,
    )
    return scores.merge(separations, on=["f1", "f2", "type"], how="left", validate="one_to_one")


def _correlation_statistic(method: str):
    """Vectorised correlation along the last axis (Spearman = Pearson of average ranks)."""

    def statistic(x, y, axis=-1):
        if method == "spearman":
            x, y = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
        return stats.pearsonr(x, y, axis=axis).statistic

    return statistic


def correlation_table(
    pairs: pd.DataFrame,
    rng: np.random.Generator,
    *,
    score_columns: Sequence[str] = SCORE_COLUMNS,
    separability_columns: Sequence[str] = SEPARABILITY_COLUMNS,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    bootstrap_method: str = "BCa",
) -> pd.DataFrame:
    """Correlations of superposition scores with separabilities (methods.md Sec. 3).

    For every (score, separability) column pair, over the pairs where both are finite: Pearson
    r (``scipy.stats.pearsonr``) and Spearman rho (``scipy.stats.spearmanr``) with their two-sided
    p-values, and a paired bootstrap confidence interval (``scipy.stats.bootstrap``, resampling
    feature pairs).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table of :func:`superposition_pair_table` (or any frame with the named columns).
    rng : numpy.random.Generator
        Seeds the bootstrap.
    score_columns, separability_columns : sequence of str
        Columns of ``pairs`` to correlate (defaults: ``S_ratio, S_joint`` and
        ``D_full, M_full, D_pca, M_pca``).
    confidence_level : float, default 0.95
    n_resamples : int, default 9999
    bootstrap_method : {"percentile", "basic", "BCa"}, default "BCa"

    Returns
    -------
    pandas.DataFrame
        One row per (score, separability, method): ``score, separability, method, n_pairs,
        statistic, p_value, ci_low, ci_high``. Rows with fewer than 3 finite pairs or a constant
        column have NaN statistic, p-value and CI; a CI is also NaN where every bootstrap
        resample gives the same value, or where some resamples have no defined correlation
        (a score that is constant on most pairs, e.g. ``S_ratio`` of a model whose units rarely
        pass the threshold: resamples of constant scores give NaN; scipy's degenerate case).

    Raises
    ------
    ValueError
        If a named column is missing, ``bootstrap_method`` is unknown or ``confidence_level`` is
        outside (0, 1).
    """
    missing = [c for c in (*score_columns, *separability_columns) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs lacks columns {missing}; it has: {', '.join(map(str, pairs.columns))}")
    if bootstrap_method not in BOOTSTRAP_METHODS:
        raise ValueError(f"unknown bootstrap_method {bootstrap_method!r}; allowed: {', '.join(BOOTSTRAP_METHODS)}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    rows = []
    for score in score_columns:
        for sep in separability_columns:
            x_Q = pairs[score].to_numpy(dtype=np.float64)
            y_Q = pairs[sep].to_numpy(dtype=np.float64)
            keep = np.isfinite(x_Q) & np.isfinite(y_Q)
            x_Q, y_Q = x_Q[keep], y_Q[keep]
            usable = x_Q.size >= 3 and np.ptp(x_Q) > 0 and np.ptp(y_Q) > 0
            for method in CORRELATION_METHODS:
                row = {
                    "score": score,
                    "separability": sep,
                    "method": method,
                    "n_pairs": int(x_Q.size),
                    "statistic": np.nan,
                    "p_value": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                }
                if usable:
                    test = stats.pearsonr if method == "pearson" else stats.spearmanr
                    result = test(x_Q, y_Q)
                    ci = stats.bootstrap(
                        (x_Q, y_Q),
                        _correlation_statistic(method),
                        paired=True,
                        vectorized=True,
                        confidence_level=confidence_level,
                        n_resamples=n_resamples,
                        method=bootstrap_method,
                        rng=rng,
                    ).confidence_interval
                    row.update(
                        statistic=float(result.statistic),
                        p_value=float(result.pvalue),
                        ci_low=float(ci.low),
                        ci_high=float(ci.high),
                    )
                rows.append(row)
    return pd.DataFrame(rows)


def correlation_by_type(pairs: pd.DataFrame, rng: np.random.Generator, **kwargs) -> pd.DataFrame:
    """:func:`correlation_table` over all pairs and within each pair type.

    Pooled over types, a correlation of S with D or M can come from the types alone: if colour
    pairs are both less superposed and better separated than shape pairs, S and D correlate across
    types even when they do not within any type. The within-type rows tell the two apart.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table, with a ``type`` column (:func:`superposition_pair_table`).
    rng : numpy.random.Generator
        Seeds the bootstraps, the pooled one first, then the types in order of first appearance.
    **kwargs
        Passed to :func:`correlation_table`.

    Returns
    -------
    pandas.DataFrame
        :func:`correlation_table`'s columns preceded by ``pair_type``: ``all`` for the pooled rows,
        then each type's rows (``shape``, ``colour``, ``position``, ``cross``).

    Raises
    ------
    ValueError
        If ``pairs`` has no ``type`` column, or as :func:`correlation_table`.
    """
    if "type" not in pairs.columns:
        raise ValueError(f"pairs lacks the column 'type'; it has: {', '.join(map(str, pairs.columns))}")
    groups = [("all", pairs)] + [(kind, pairs[pairs["type"] == kind]) for kind in pairs["type"].unique()]
    tables = [correlation_table(group, rng, **kwargs).assign(pair_type=kind) for kind, group in groups]
    table = pd.concat(tables, ignore_index=True)
    return table[["pair_type", *table.columns.drop("pair_type")]]
