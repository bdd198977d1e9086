"""The papers' quoted numbers (schema) and the comparison tables built from hand-made result tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from snakemake_cli import TINY

from clipmech.config import load_config
from clipmech.papers import compare, numbers, sources
from clipmech.stages.compare_paper import compare_paper


def test_every_number_has_a_source_a_parsable_value_and_a_known_analogue():
    assert set(n.paper for n in numbers.NUMBERS) == set(numbers.PAPERS) == set(sources.TABLES)
    for n in numbers.NUMBERS:
        assert n.source and n.table and n.quantity and n.model and n.dataset
        if n.value:
            float(n.value.replace(",", ""))
        else:
            assert n.claim, f"{n.source}: a number the paper does not give needs its claim"
        if n.sd:
            assert float(n.sd) >= 0
        assert n.analogues
        for selector in n.analogues:
            assert selector["table"] in sources.TABLES[n.paper]
            assert selector["table"] in compare.EXTRACTORS


def test_quoted_numbers_spot_checks():
    by_source = {n.source: n for n in numbers.NUMBERS}
    assert by_source["Table 3, row Ours"].value == "26.2"
    assert by_source["Table 2 (a) Intervention on neurons, MiCLIP, Removal, ResNet-50"].value == "-17.24"
    assert by_source["Table 2 (a) Intervention on neurons, MiCLIP, Removal, ResNet-50"].sd == "0.05"
    assert by_source["Table 4 (a) ImageNet-1k, SAE, Output-Only, Removal, ViT-B/16"].value == "-32.79"
    assert by_source["Table 1, ImageNet-1k, CLIP-dissect, ViT-B/16 Acc."].value == "0.9500"


def test_unknown_paper_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        numbers.numbers_of("nope")


def _ablation() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "level": ["pair", "pair", "neuron", "pair", "pair", "neuron"],
            "fraction": [0.2, 1.0, 0.2, 0.2, 1.0, 0.2],
            "task": ["colour"] * 3 + ["shape"] * 3,
            "accuracy": [0.5, 0.9, 0.25, 0.6, 0.7, 0.1],
            "model_accuracy": [0.9, 0.9, 0.9, 0.7, 0.7, 0.7],
        }
    )


def test_neuron_attention_ours_beside_paper_and_not_run_rows():
    src = [{"table": "ablation", "model": "rn", "dataset": "shapes", "path": "a.tsv"}]
    table = compare.comparison_table("neuron-attention", src, {"a.tsv": _ablation()})
    assert list(table.columns) == list(compare.COLUMNS)
    baseline = table[table["source"] == "Table 1, row (Baseline)"]
    assert baseline["ours"].tolist() == pytest.approx([90.0, 70.0])
    assert (baseline["paper"] == "70.7").all() and (baseline["status"] == "compared").all()
    assert baseline["our_detail"].tolist() == ["task colour", "task shape"]
    pairs = table[table["quantity"].str.startswith("accuracy drop keeping the top 20 % of neuron-head")]
    assert pairs["ours"].tolist() == pytest.approx([40.0, 10.0])
    neurons = table[table["quantity"].str.startswith("accuracy drop keeping the top 20 % of neurons")]
    assert neurons["ours"].tolist() == pytest.approx([65.0, 60.0])
    assert (neurons["status"] == "paper gives no number").all()
    # No segmentation table and no PASCAL run: each segmentation number keeps one "not run" row.
    segmentation = table[table["table"].isin(["Table 3", "Table 4"])]
    assert len(segmentation) == 5 and (segmentation["status"] == "not run").all()
    assert segmentation["ours"].isna().all() and set(segmentation["paper"]) == {"22.8", "26.2", "16.5", "24.7"}


def test_row_missing_from_our_table_is_marked():
    src = [{"table": "ablation", "model": "rn", "dataset": "shapes", "path": "a.tsv"}]
    no_fifth = _ablation().assign(fraction=lambda t: t["fraction"].where(t["fraction"] != 0.2, 0.5))
    table = compare.comparison_table("neuron-attention", src, {"a.tsv": no_fifth})
    drop = table[table["quantity"].str.startswith("accuracy drop keeping the top 20 % of neuron-head")]
    assert drop["status"].tolist() == ["not in our table"] and drop["our_model"].tolist() == ["rn"]


def test_miclip_unit_kinds_go_to_their_panels():
    delta = pd.DataFrame(
        {
            "method": ["miclip", "miclip"],
            "intervention": ["scale", "scale"],
            "beta": [2.0, 0.0],
            "effect": ["enhance", "remove"],
            "n_seeds": [3, 3],
            "delta_acc_mean": [1.5, -4.0],
            "delta_acc_sd": [0.1, 0.2],
            "p_value": [math.nan, math.nan],
        }
    )
    src = [
        {"table": "delta_acc", "model": "vit", "dataset": "shapes", "site": "block3", "unit_kind": "sae", "path": "d"}
    ]
    table = compare.comparison_table("miclip", src, {"d": delta})
    ours = table[table["status"] == "compared"]
    # Table 2 (b) only: MiCLIP, two effects, three paper models.
    assert len(ours) == 6 and ours["source"].str.startswith("Table 2 (b)").all()
    assert sorted(set(ours["ours"])) == [-4.0, 1.5]
    enhance = ours[ours["source"].str.contains("Enhancement, CLIP ViT-B-16")]
    assert enhance[["paper", "paper_sd", "ours", "ours_sd"]].values.tolist() == [["5.88", "0.03", 1.5, 0.1]]
    assert enhance["our_detail"].iloc[0] == "site block3, unit_kind sae; 3 seeds"
    assert (table.loc[table["source"].str.startswith("Table 2 (a)"), "status"] == "not run").all()


def test_causal_tracing_counts_and_shares():
    auroc = pd.DataFrame(
        {
            "tower": ["visual", "visual", "text", "visual"],
            "concept": ["red", "circle", "red", "left"],
            "concept_type": ["colour", "shape", "colour", "position"],
            "n_selective": [3, 2, 4, 0],
            "modality_invariant": [True, False, True, False],
        }
    )
    src = [{"table": "auroc", "model": "vit", "dataset": "shapes", "path": "s"}]
    table = compare.comparison_table("causal-tracing", src, {"s": auroc}).set_index("source")
    assert table.loc["Sec. 4.1: '1,203 SAE features with high selectivity for colors'", "ours"] == 7
    share = table.loc["Sec. 4.1: 'Only 14% of these features are polysemantic across modalities'"]
    assert share["ours"] == pytest.approx(100 / 3) and share["paper"] == "14"


def test_missing_table_is_an_error():
    src = [{"table": "superposition", "model": "m", "dataset": "d", "path": "x"}]
    with pytest.raises(ValueError, match="no table read"):
        compare.comparison_table("shapes-superposition", src, {})


def test_stage_writes_the_table(tmp_path):
    path = tmp_path / "correlations.tsv"
    pd.DataFrame(
        {
            "pair_type": ["all", "all", "colour"],
            "score": ["S_ratio"] * 3,
            "separability": ["D_full", "M_full", "D_full"],
            "method": ["pearson"] * 3,
            "n_pairs": [35, 35, 15],
            "statistic": [-0.4, 0.3, 0.1],
        }
    ).to_csv(path, sep="\t", index=False)
    out = tmp_path / "shapes-superposition.tsv"
    src = [{"table": "superposition", "model": "vit", "dataset": "shapes", "path": str(path)}]
    compare_paper(paper="shapes-superposition", sources=src, comparison=str(out))
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert table["ours"].astype(float).tolist() == [-0.4, 0.3]
    assert (table["status"] == "paper gives no number").all() and (table["paper"] == "").all()


def test_sources_of_the_tiny_config_follow_its_plan():
    config = load_config(yaml.safe_load(TINY.read_text()))
    plan = config.plan
    miclip = sources.paper_sources(config, "miclip")
    assert len(miclip) == 3 * len(plan.miclip_units)
    assert {(s["model"], s["site"], s["unit_kind"]) for s in miclip} == set(plan.miclip_units)
    tracing = sources.paper_inputs(config, "causal-tracing")
    assert len(tracing["circuit"]) == len(plan.patchings) and len(tracing["auroc"]) == len(plan.concepts)
    attention = sources.paper_inputs(config, "neuron-attention")
    assert attention["pascal"] == [] and len(attention["ablation"]) == len(plan.decompositions)
    with pytest.raises(ValueError, match="expected one of"):
        sources.paper_sources(config, "nope")
