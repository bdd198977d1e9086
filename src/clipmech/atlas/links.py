"""Links between the unit pages of an atlas and the tables other analyses attach to them (methods.md Sec. 10).

On the pages of :class:`clipmech.atlas.units.Pages`: an SAE latent links the residual dims it reads most and
the ViT MLP units that write them, and those MLP units link back to the latent; a CLIP-ResNet neuron links
its neuron-head pairs and each pair its neuron; the SAE evaluation (methods.md Sec. 7.4), the concept AUROCs
and causal effects of the patching analyses (Sec. 8) and the MiCLIP descriptions, localisation and
interventions (Sec. 9) become tables of the pages they concern, each titled with the dataset and images it
was measured on. A unit without a page is named, not linked.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from clipmech.atlas import gather, sections
from clipmech.atlas.render import UnitPage
from clipmech.atlas.units import POOL_SITE, RESNET_NEURON_SITE, Pages, miclip_target

log = logging.getLogger(__name__)


def read(path: str | None) -> pd.DataFrame | None:
    """A TSV as a DataFrame, or None without a path (the analysis did not run on this model)."""
    return None if path is None else pd.read_csv(path, sep="\t")


def sae_reads(pages: Pages, saes: list[tuple], mlp: list[UnitPage]) -> None:
    """Each SAE latent's strongest residual inputs and the MLP units that write them, and on those MLP units
    the latents that read them (``saes``: :func:`clipmech.atlas.units.sae_units` results)."""
    n_layers = len({u.layer for u in mlp})
    readers: dict[str, list] = {}
    for site_name, latents, dims_nK, weights_nK in saes:
        writers = gather.residual_writers(site_name, n_layers) if mlp else []
        for i, unit in enumerate(latents):
            if not unit.page:
                continue
            rows = []
            for dim, weight in zip(dims_nK[i].tolist(), weights_nK[i].tolist()):
                rows.append(
                    (dim, weight, *(pages.link("mlp", f"{layer}-{dim}", f"{layer}-{dim}") for layer in writers))
                )
                for layer in writers:
                    readers.setdefault(f"{layer}-{dim}", []).append((pages.link("sae", unit.key, unit.key), weight))
            unit.tables.append(
                sections.links(
                    "Residual dims the latent reads most (largest |W_enc|), and the MLP units that write them",
                    ("dim", "W_enc", *(f"block {layer} MLP unit" for layer in writers)),
                    rows,
                )
            )
    for key, rows in readers.items():
        pages.attach(
            "mlp",
            key,
            sections.links(
                "SAE latents that read this unit's residual dim (among their strongest inputs)",
                ("latent", "W_enc"),
                sorted(rows, key=lambda r: -abs(r[1])),
            ),
        )


def sae_alignment(pages: Pages, latents: list[UnitPage], latents_tsv: str, metrics_json: str, dataset: str) -> None:
    """On each SAE latent's page its evaluation on ``dataset`` (:func:`clipmech.atlas.sections.sae_alignment`;
    ``evaluate_sae``'s ``latents.tsv`` and ``metrics.json``), and its firing frequency as its index note."""
    table = pd.read_csv(latents_tsv, sep="\t").set_index("latent")
    with open(metrics_json) as f:
        metrics = json.load(f)
    for i, unit in enumerate(latents):
        if i in table.index:
            unit.note = f"frequency {table.loc[i, 'frequency']:.2g}"
            pages.attach(unit.kind, unit.key, sections.sae_alignment(table, metrics, i, dataset))


def neuron_pairs(
    pages: Pages, neurons: list[UnitPage], pairs: list[UnitPage], pair_table: pd.DataFrame, dataset: str
) -> None:
    """On each CLIP-ResNet neuron page its neuron-head pairs by rank (``pair_table``: the table of
    :func:`clipmech.atlas.units.resnet_units`, on the images ``dataset`` names), on each pair page its neuron."""
    for neuron in neurons:
        rows = pair_table[pair_table["neuron"] == int(neuron.key)].sort_values("rank")
        neuron.tables.append(
            sections.links(
                f"Its neuron-head pairs (methods.md Sec. 5), by mean contribution norm on {dataset}",
                ("pair", "head", "rank", "mean norm", "OMP words"),
                [
                    (
                        pages.link("pair", f"{r.neuron}-{r.head}", f"{r.neuron}-{r.head}"),
                        r.head,
                        r.rank,
                        r.mean_norm,
                        r.words,
                    )
                    for r in rows.itertuples(index=False)
                ],
            )
        )
    for pair in pairs:
        c = pair.key.split("-")[0]
        pair.tables.insert(0, sections.links("Its neuron", ("neuron",), [(pages.link("neuron", c, f"neuron {c}"),)]))


def patching(
    pages: Pages,
    neurons: list[UnitPage],
    pairs: list[UnitPage],
    auroc: pd.DataFrame | None,
    recovery: pd.DataFrame | None,
    dataset: str | None,
) -> None:
    """The concept AUROCs of the CLIP-ResNet neurons and the causal effects of its neurons and heads
    (``concept_auroc``'s and ``patch_components``' tables on the minimal-pairs dataset ``dataset``; None where
    they did not run). A pair page shows its head's effects, titled as the whole head's."""
    for neuron in neurons:
        c = int(neuron.key)
        if auroc is not None:
            pages.attach(
                "neuron",
                neuron.key,
                sections.concept_auroc(auroc, {RESNET_NEURON_SITE: "last stage", POOL_SITE: "pool input"}, c, dataset),
            )
        if recovery is not None:
            pages.attach("neuron", neuron.key, sections.recovery(recovery, "pool_neuron", dataset, unit=c))
    if recovery is not None:
        for pair in pairs:
            head = int(pair.key.split("-")[1])
            pages.attach("pair", pair.key, sections.recovery(recovery, "pool_head", dataset, head=head, pair=pair.key))


def miclip(pages: Pages, miclip_units: list[dict], sae_sites: list[str], inputs: dict, dataset: str) -> None:
    """MiCLIP descriptions, localisation and interventions (on ``dataset``) of the unit sets it was run on
    (``miclip_units``: ``{site, kind}``, aligned with ``inputs``' lists ``miclip_descriptions``,
    ``miclip_interventions``, ``miclip_localisation``), on the pages of their units: the localisation per
    seed that selected the unit (:func:`clipmech.atlas.sections.miclip_localisation`)."""
    for entry, descriptions, interventions, localisation in zip(
        miclip_units,
        inputs.get("miclip_descriptions", []),
        inputs.get("miclip_interventions", []),
        inputs.get("miclip_localisation", []),
    ):
        target = miclip_target(entry["site"], entry["kind"], sae_sites)
        if target is None:
            log.info("MiCLIP units %s (%s) have no atlas pages: skipped", entry["site"], entry["kind"])
            continue
        kind, pattern = target
        descriptions, interventions, localisation = read(descriptions), read(interventions), read(localisation)
        for unit in sorted(set(descriptions["unit"]) | set(localisation["unit"])):
            key = pattern.format(unit=int(unit))
            if not pages.has_page(kind, key):
                continue
            pages.attach(kind, key, sections.miclip_descriptions(descriptions, int(unit), dataset))
            pages.attach(kind, key, sections.miclip_localisation(localisation, interventions, int(unit), dataset))
