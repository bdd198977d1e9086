"""OMP text decomposition of the neuron-head directions (neuron-attention paper Fig. 2): the stage of rule ``decompose_text``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.data import datasets, tables
from clipmech.decomposition import components, omp
from clipmech.decomposition import pool as dec
from clipmech.decomposition import text as td
from clipmech.figures import sparse_accuracy as sparse_accuracy_figures
from clipmech.models import loading
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def decompose_text(
    *,
    store: str,
    dataset_dir: str,
    text_path: str,
    out: dict,
    params: dict,
    pc_top_k: int,
    chunk_size: int,
    device: str,
    threads: int,
    label: str,
) -> None:
    """OMP text decomposition of neuron-head directions and the sparse-direction accuracy (paper Fig. 2).

    Coded directions: the top ``keep_fraction`` pairs by mean norm and the top ``n_class_pairs``
    pairs of every zero-shot class by cos(u, prompt). ``out["words"]``: the coded kept pairs
    (sorted by mean norm) with their first words; ``out["class_pairs"]``: each class's pairs
    with words; ``out["accuracy"]``: zero-shot accuracy with the kept pairs' directions replaced
    by their m-sparse approximations (rest mean-ablated), against the neuron baseline (kept
    neurons reduced to their first PC, itself replaced by its m-sparse approximation).
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, chunk_size)
    text = np.load(text_path)
    words, dictionary_AE = text["words"].tolist(), text["word_embeddings"]
    tasks = components.zero_shot_tasks(data, text)
    m_max = params["n_components"]
    if max(params["m_values"]) > m_max:
        raise ValueError(f"m_values {params['m_values']} must not exceed n_components={m_max}")
    u_HCE = parts.u_HCE
    h, c, _ = u_HCE.shape
    scores = components.component_scores(s_NHC, u_HCE)
    keep_HC = dec.top_fraction_mask(scores["pair"], params["keep_fraction"])
    order = np.argsort(-scores["pair"].ravel(), kind="stable")
    kept = order[keep_HC.ravel()[order]]
    kept_heads, kept_neurons = np.divmod(kept, c)
    class_rows = []
    for task in tasks:
        heads_Kk, neurons_Kk, cos_Kk = dec.top_pairs_by_text(u_HCE, task.text_KE, params["n_class_pairs"])
        for k, name in enumerate(task.classes):
            for r in range(heads_Kk.shape[1]):
                class_rows.append(
                    {
                        "task": task.name,
                        "class": name,
                        "rank": r + 1,
                        "head": heads_Kk[k, r],
                        "neuron": neurons_Kk[k, r],
                        "cos": cos_Kk[k, r],
                    }
                )
    class_table = pd.DataFrame(class_rows)
    class_pairs = class_table[["head", "neuron"]].to_numpy()
    coded = np.unique(np.concatenate([np.stack([kept_heads, kept_neurons], 1), class_pairs]), axis=0)
    code = td.sparse_codes(
        u_HCE[coded[:, 0], coded[:, 1]], dictionary_AE, m_max, params["omp_batch_size"], torch_device
    )
    described = td.words_table(coded[:, 0], coded[:, 1], u_HCE, code, dictionary_AE, words, params["n_words_shown"])
    described["mean_norm"] = scores["pair"][coded[:, 0], coded[:, 1]]
    words_out = described.merge(
        pd.DataFrame({"head": kept_heads, "neuron": kept_neurons, "rank": np.arange(1, len(kept) + 1)}),
        on=["head", "neuron"],
    )
    tables.write_table(
        words_out.sort_values("rank")[["rank", "head", "neuron", "mean_norm", "n_atoms", "cos_sparse_u", "words"]],
        out["words"],
    )
    class_out = class_table.merge(described, on=["head", "neuron"]).sort_values(["task", "class", "rank"])
    tables.write_table(
        class_out[["task", "class", "rank", "head", "neuron", "cos", "mean_norm", "cos_sparse_u", "words"]],
        out["class_pairs"],
    )

    # accuracy vs m: pairs
    index = {tuple(p): i for i, p in enumerate(coded.tolist())}
    rows_K = np.array([index[(hh, nn)] for hh, nn in zip(kept_heads.tolist(), kept_neurons.tolist())], dtype=np.intp)
    u_norm_K = np.linalg.norm(u_HCE[kept_heads, kept_neurons], axis=1)
    kept_code = omp.OMPResult(*(None if t is None else t[torch.as_tensor(rows_K)] for t in code))
    s_mean_HC = s_NHC.mean(axis=0)
    records = []

    def score(level: str, directions: str, m, y: np.ndarray) -> None:
        for task in tasks:
            records.append(
                {
                    "level": level,
                    "directions": directions,
                    "m": m,
                    "task": task.name,
                    "accuracy": components.zero_shot_accuracy(y, task),
                }
            )

    score("model", "exact", np.nan, y_NE)
    exact_pairs = components.pair_outputs_with_directions(
        s_NHC,
        u_HCE,
        parts.bias_E,
        keep_HC,
        s_mean_HC,
        kept_heads,
        kept_neurons,
        u_HCE[kept_heads, kept_neurons],
        chunk_size,
    )
    score("pair", "exact", np.nan, exact_pairs)
    for m in params["m_values"]:
        sparse_KE = td.sparse_directions(kept_code, dictionary_AE, m, u_norm_K)
        y = components.pair_outputs_with_directions(
            s_NHC, u_HCE, parts.bias_E, keep_HC, s_mean_HC, kept_heads, kept_neurons, sparse_KE, chunk_size
        )
        score("pair", "sparse", m, y)
    # neurons: the same fraction of neurons, each reduced to its first PC
    keep_C = dec.top_fraction_mask(scores["neuron"], params["keep_fraction"])
    v_KE, _ = components.neuron_directions(s_NHC, u_HCE, np.flatnonzero(keep_C), pc_top_k)
    score(
        "neuron",
        "exact",
        np.nan,
        components.neuron_outputs_rank_one(s_NHC, u_HCE, parts.bias_E, keep_C, s_mean_HC, v_KE, v_KE),
    )
    neuron_code = td.sparse_codes(v_KE, dictionary_AE, m_max, params["omp_batch_size"], torch_device)
    for m in params["m_values"]:
        sparse_KE = td.sparse_directions(neuron_code, dictionary_AE, m, np.linalg.norm(v_KE, axis=1))
        score(
            "neuron",
            "sparse",
            m,
            components.neuron_outputs_rank_one(s_NHC, u_HCE, parts.bias_E, keep_C, s_mean_HC, v_KE, sparse_KE),
        )
    accuracy = pd.DataFrame(records)
    tables.write_table(accuracy, out["accuracy"])
    log.info("sparse-direction accuracy:\n%s", accuracy.to_string())
    sparse_accuracy_figures.sparse_accuracy(
        accuracy,
        f"{label}: top {params['keep_fraction']:.0%} of pairs / neurons kept, directions from m of {len(words)} words",
        out["figure"],
    )
