# What each job reads: input and params functions of the wildcards, and the targets of rule all.
import re
from pathlib import Path

from clipmech.checkpoints import is_local_checkpoint
from clipmech.codehash import code_hash, model_config_sha256
from clipmech.config import ACTIVATIONS, ATTNPOOL, CHECKPOINT, DATA

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
ENV = "../../environment.yml"
PLAN = CONFIG.plan
NATURAL_DATASETS = CONFIG.natural_datasets()


def script_code(name):
    """Hash of the package code the script `name` runs: a param, so editing that code reruns the rule."""
    return code_hash(SCRIPTS / name)


def sha256_record(path):
    """The sha256 record of a verified artefact (clipmech.artefacts.record_path, `<file>.sha256`), declared as an
    output beside the file its writer makes and as an input of its readers. `path` is a pattern, or an
    input function (then a function giving the records of its files)."""
    if callable(path):
        return lambda wildcards: sha256_record(path(wildcards))
    if isinstance(path, (list, tuple)):
        return [f"{file}.sha256" for file in path]
    return f"{path}.sha256"


def name_pattern(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in sorted(names)) or "(?!)"


def reported(path, caption, category, subcategory="{model} on {dataset}"):
    """An output shown in the report, captioned by workflow/report/<caption>."""
    return report(
        path,
        caption=f"../report/{caption}",
        category=category,
        subcategory=subcategory,
    )


wildcard_constraints:
    model=name_pattern(CONFIG.models),
    dataset=name_pattern(CONFIG.datasets),


# --- Models and datasets ----------------------------------------------------------------------------


def model_spec(model):
    """A model as its jobs load it (clipmech.models.loading.ModelSpec): name, architecture, pretrained and
    sha256 if set; a pipeline-trained model's `pretrained` is its checkpoint."""
    return {"name": model, **CONFIG.model_entry(model)}


def model_params(wildcards):
    return model_spec(wildcards.model)


def loaded_checkpoint(model):
    """The checkpoint a model loads, when it is a file: trained here or a local path."""
    pretrained = CONFIG.model_entry(model)["pretrained"]
    return [pretrained] if is_local_checkpoint(pretrained) else []


def checkpoint_input(wildcards):
    return loaded_checkpoint(wildcards.model)


def architecture(wildcards):
    return CONFIG.models[wildcards.model].architecture


def model_config(wildcards):
    """Hash of the model's own open_clip config, None for open_clip's (clipmech.codehash.model_config_sha256)."""
    return model_config_sha256(architecture(wildcards))


def train_params(wildcards):
    return CONFIG.models[wildcards.model].train.params()


def dataset_spec(wildcards):
    """A dataset's config entry as its rule reads it; a natural one not located yet is refused with the key
    to set (Config.dataset_spec)."""
    return CONFIG.dataset_spec(wildcards.dataset)


def synthetic_data(wildcards):
    """The folder of a synthetic dataset; a natural-image one is refused with the reason (Config.synthetic_data)."""
    return CONFIG.synthetic_data(wildcards.dataset)


def decomposition_inputs(text):
    """An input function of ablate_components (text False) and decompose_text (text True): the dataset's folder,
    the text embeddings, a natural dataset's zero-shot classifier (Config.decomposition_inputs).
    """
    return lambda wildcards: CONFIG.decomposition_inputs(
        wildcards.model, wildcards.dataset, text
    )


def decomposition_classifier_spec(wildcards):
    """What a natural dataset's classifier is checked against; None on Shapes (Config.decomposition_classifier_spec)."""
    return CONFIG.decomposition_classifier_spec(
        model_spec(wildcards.model), wildcards.dataset
    )


def concept_data(wildcards):
    """The folder of a dataset with concepts; one without is refused with the reason (Config.concept_data)."""
    return CONFIG.concept_data(wildcards.dataset)


def dataset_words(wildcards):
    """A captions dataset's concept words (methods.md Sec. 1.1); None for other kinds."""
    words = getattr(CONFIG.datasets[wildcards.dataset], "words", None)
    return None if words is None else list(words)


def tracing_params(wildcards):
    """patching.* as causal tracing runs it on the dataset (Config.tracing_params)."""
    return CONFIG.tracing_params(wildcards.dataset)


def patching_foil(wildcards):
    """patching.foil for causal tracing on a captions dataset; None for a pairs dataset (Config.patching_foil)."""
    return CONFIG.patching_foil(wildcards.dataset)


def shift_image_size(wildcards):
    """Shift splits are drawn at the image size of their base dataset."""
    return CONFIG.datasets[CONFIG.datasets[wildcards.dataset].base].image_size


def shift_store(wildcards):
    """The attention-pool store of the model on the shift splits of the dataset."""
    shift = PLAN.shift_of[wildcards.dataset]
    return ATTNPOOL.format(model=wildcards.model, dataset=shift)


def shift_data(wildcards):
    return DATA.format(dataset=PLAN.shift_of[wildcards.dataset])


def pair_label(wildcards):
    """Figure title prefix of a model on a dataset."""
    return f"{wildcards.model} on {wildcards.dataset}"


def model_label(wildcards):
    return wildcards.model


# --- SAEs (methods.md Sec. 7): each trains on its model's store of the first analysed dataset ----------


def sae_evaluation_inputs(wildcards):
    """The SAE dataset's folder and, for one with classes, its zero-shot classifier (Config.sae_evaluation_inputs)."""
    return CONFIG.sae_evaluation_inputs(wildcards.model)


def sae_label(wildcards):
    return f"{wildcards.model} at {wildcards.site} on {wildcards.dataset}"


# --- MiCLIP (methods.md Sec. 9) -----------------------------------------------------------------------


def miclip_reference_text(wildcards):
    return f"results/miclip/reference/{CONFIG.miclip.reference}/{wildcards.dataset}.npz"


def miclip_reference(wildcards):
    return model_spec(CONFIG.miclip.reference)


def miclip_reference_config(wildcards):
    return model_config_sha256(CONFIG.models[CONFIG.miclip.reference].architecture)


def miclip_reference_checkpoint(wildcards):
    return loaded_checkpoint(CONFIG.miclip.reference)


def miclip_sae_input(wildcards):
    """The SAE an `sae` unit set reads; none for neurons."""
    if wildcards.kind == "sae":
        return [
            f"results/sae/{wildcards.model}/{PLAN.sae_dataset}/{wildcards.site}/checkpoint.pt"
        ]
    return []


def miclip_label(wildcards):
    return f"{wildcards.model} at {wildcards.site} on {wildcards.dataset}"


# --- The atlas (methods.md Sec. 10) -------------------------------------------------------------------


def atlas_sae_sites(wildcards):
    """The SAE sites of a model's atlas: its SAEs, when it is an analysed ViT (its store holds the sites)."""
    if wildcards.model in CONFIG.analyses.models:
        return list(PLAN.sae_sites.get(wildcards.model, []))
    return []


def atlas_miclip_units(wildcards):
    """The MiCLIP unit sets of a model ({kind, site}), from `miclip.units`."""
    return [unit.params() for unit in CONFIG.miclip.units.get(wildcards.model, ())]


def atlas_concept_words(wildcards):
    """The concept words of a captions atlas.dataset (methods.md Sec. 1.1); None for other kinds."""
    words = getattr(CONFIG.datasets[PLAN.atlas_dataset], "words", None)
    return None if words is None else list(words)


def atlas_inputs(wildcards):
    """Named inputs of a model's atlas (clipmech.stages.build_atlas): only the results its analyses make.
    On a natural-image atlas.dataset: the store, units.tsv and the SAE checkpoints (their latents are computed
    on the dataset's store); the SAE evaluation, the patching and MiCLIP tables are those of a Shapes atlas,
    made on their own synthetic datasets; no decomposition (synthetic only)."""
    model, dataset = wildcards.model, PLAN.atlas_dataset
    inputs = {"data": DATA.format(dataset=dataset)}
    if model in CONFIG.analyses.models:
        inputs["store"] = ACTIVATIONS.format(model=model, dataset=dataset)
        inputs["units"] = f"results/selectivity/{model}/{dataset}/units.tsv"
    if model in CONFIG.decomposition.models and dataset not in NATURAL_DATASETS:
        base = f"results/decomposition/{model}/{dataset}"
        inputs["attnpool"] = ATTNPOOL.format(model=model, dataset=dataset)
        inputs["pairs"] = f"{base}/pairs.tsv"
        inputs["words"] = f"{base}/words.tsv"
    inputs |= CONFIG.atlas_patching_inputs(model)
    sites = atlas_sae_sites(wildcards)
    if sites:
        inputs["sae_checkpoints"] = [
            f"results/sae/{model}/{PLAN.sae_dataset}/{site}/checkpoint.pt"
            for site in sites
        ]
        inputs["sae_checkpoints_sha256"] = [
            sha256_record(path) for path in inputs["sae_checkpoints"]
        ]
        inputs["sae_latents"] = [
            f"results/sae/{model}/{PLAN.sae_dataset}/{site}/latents.tsv"
            for site in sites
        ]
        inputs["sae_metrics"] = [
            f"results/sae/{model}/{PLAN.sae_dataset}/{site}/metrics.json"
            for site in sites
        ]
    units = atlas_miclip_units(wildcards)
    for name in ("descriptions", "interventions", "localisation") if units else ():
        inputs[f"miclip_{name}"] = [
            f"results/miclip/{model}/{CONFIG.miclip.dataset}/{unit['site']}/{unit['kind']}/{name}.tsv"
            for unit in units
        ]
    return inputs


# --- rule all -------------------------------------------------------------------------------------------


def all_targets():
    """One output of every job no other job always needs, one no rule reads; the rest of the DAG
    (datasets, trainings, stores, probes, encoders) follows from their inputs. What the config leaves
    out is logged (clipmech.config.Config.skipped)."""
    for line in CONFIG.skipped():
        logger.info(line)
    synthetic = {dataset for _, dataset in PLAN.shapes_analyses}
    targets = [f"results/datasets/{d}/preview.png" for d in sorted(synthetic)]
    targets += [f"results/models/{model}/loss_curve.png" for model in PLAN.trained]
    for model, dataset in PLAN.analyses:
        if dataset not in synthetic:
            targets.append(f"results/selectivity/{model}/{dataset}/units.tsv")
    for model, dataset in PLAN.shapes_analyses:
        targets += [
            f"results/selectivity/{model}/{dataset}/entropy_by_layer.png",
            f"results/superposition/{model}/{dataset}/distance.png",
            f"results/binding/{model}/{dataset}/accuracy.png",
            f"results/gradcam/{model}/{dataset}/examples.png",
            f"results/tsne/{model}/{dataset}/tsne.png",
        ]
    for model, dataset in PLAN.decompositions:
        base = f"results/decomposition/{model}/{dataset}"
        targets += [
            f"{base}/norms.png",
            f"{base}/ablation.png",
            f"{base}/sparse_accuracy.png",
            f"{base}/attention_sink.png",
        ]
        if (model, dataset) in PLAN.shapes_decompositions:
            targets.append(f"results/segmentation/{model}/{dataset}/masks.png")
        if dataset in PLAN.shift_of:
            targets.append(f"{base}/shift.png")
    targets += CONFIG.patching_targets()
    for model, site in PLAN.saes:
        base = f"results/sae/{model}/{PLAN.sae_dataset}/{site}"
        targets += [f"{base}/{n}.png" for n in ("training", "histogram", "top_images")]
    for model, site, kind in PLAN.miclip_units:
        base = f"results/miclip/{model}/{CONFIG.miclip.dataset}/{site}"
        targets.append(f"{base}/training.png")
        base = f"{base}/{kind}"
        targets += [f"{base}/{n}.png" for n in ("delta_acc", "descriptions")]
    targets += [f"results/atlas/{model}.tsv" for model in PLAN.atlas_models]
    targets += [
        f"results/zeroshot/{model}/{dataset}/accuracy.tsv"
        for model, dataset in PLAN.zeroshots
    ]
    targets += [DATA.format(dataset=dataset) for dataset in CONFIG.indexed_only()]
    if CONFIG.tsne.cifar10 is not None:
        targets += [
            f"results/tsne/{model}/cifar10.png" for model in CONFIG.analyses.models
        ]
    if CONFIG.decomposition.pascal_context.dataset is not None:
        targets += [
            f"results/pascal-context-59/{model}/miou.tsv"
            for model in CONFIG.decomposition.models
        ]
    return list(dict.fromkeys(targets))  # a site's MiCLIP training once
