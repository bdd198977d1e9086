"""Which of our result tables each paper's comparison reads, from the config's run plan (methods.md Sec. 11).

A source is ``{"table", "model", "dataset", "path"}`` (MiCLIP's add ``site`` and ``unit_kind``): one result
table of one run the config plans. Standard library only: the Snakefile imports it at parse time.
"""

from __future__ import annotations

from clipmech.papers.numbers import PAPERS

#: Per paper, the kinds of result table its numbers' analogues read (``table`` of the selectors).
TABLES = {
    "shapes-superposition": ("superposition",),
    "neuron-attention": ("ablation", "segmentation", "pascal"),
    "causal-tracing": ("auroc", "interventions", "circuit"),
    "miclip": ("description_accuracy", "delta_acc", "miclip_ablation"),
}


def paper_sources(config, paper: str) -> list[dict]:
    """Every result table of ``config``'s run that the comparison of ``paper`` reads, in a fixed order.

    Parameters
    ----------
    config : clipmech.config.Config
    paper : str
        A key of :data:`clipmech.papers.numbers.PAPERS`.

    Raises
    ------
    ValueError
        If ``paper`` is unknown (the message lists the papers).
    """
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of: {', '.join(PAPERS)}")
    plan = config.plan
    rows: list[tuple[str, str, str, str]] = []
    if paper == "shapes-superposition":
        rows += [
            ("superposition", m, d, f"results/superposition/{m}/{d}/correlations.tsv") for m, d in plan.shapes_analyses
        ]
    elif paper == "neuron-attention":
        rows += [("ablation", m, d, f"results/decomposition/{m}/{d}/ablation.tsv") for m, d in plan.decompositions]
        # Segmentation reads Shapes masks: it runs on the Shapes decompositions only.
        rows += [
            ("segmentation", m, d, f"results/segmentation/{m}/{d}/miou.tsv") for m, d in plan.shapes_decompositions
        ]
        pascal = config.decomposition.pascal_context.dataset
        if pascal is not None:
            rows += [
                ("pascal", m, pascal, f"results/pascal-context-59/{m}/miou.tsv") for m in config.decomposition.models
            ]
    elif paper == "causal-tracing":
        rows += [("auroc", m, d, f"results/patching/{m}/{d}/auroc_summary.tsv") for m, d in plan.concepts]
        rows += [
            ("interventions", m, d, f"results/patching/{m}/{d}/interventions.tsv")
            for m, d in plan.concept_interventions
        ]
        rows += [("circuit", m, d, f"results/patching/{m}/{d}/circuit_summary.tsv") for m, d in plan.patchings]
    sources = [{"table": t, "model": m, "dataset": d, "path": p} for t, m, d, p in rows]
    if paper == "miclip":
        dataset = config.miclip.dataset
        for table, name in (
            ("description_accuracy", "description_accuracy"),
            ("delta_acc", "delta_acc"),
            ("miclip_ablation", "ablation"),
        ):
            sources += [
                {
                    "table": table,
                    "model": m,
                    "dataset": dataset,
                    "site": s,
                    "unit_kind": k,
                    "path": f"results/miclip/{m}/{dataset}/{s}/{k}/{name}.tsv",
                }
                for m, s, k in plan.miclip_units
            ]
    return sources


def paper_inputs(config, paper: str) -> dict[str, list[str]]:
    """The paths of :func:`paper_sources` by table kind (a rule's named inputs; a kind the run lacks is empty)."""
    sources = paper_sources(config, paper)
    return {table: [s["path"] for s in sources if s["table"] == table] for table in TABLES[paper]}
