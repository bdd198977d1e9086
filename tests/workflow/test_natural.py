"""Natural-image datasets through the DAG: one dataset of each kind beside the tiny config, built from the
photographs inside scikit-image's wheel (nothing downloads), indexed, classified zero-shot and, for the
photographs and their captions, the concept AUROC of tiny-vit's units, and a tiny PASCAL Context copy, analysed
and segmented by the decomposed tiny-rn (a CIFAR-10 copy cannot be indexed here: torchvision checks the md5 sums
of the real files); then, in a config of its own, the atlas of tiny-vit on the photographs, opened in headless
Chromium; last, in another, an SAE trained and evaluated on the photographs (analyses.datasets[0])."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage
import yaml
from PIL import Image
from snakemake_cli import TINY, planned_jobs, snakemake
from test_atlas_browser import ARTIFACTS
from toys import fake_pascal_context

from clipmech.data import datasets

pytestmark = pytest.mark.integration

#: Photographs shipped in scikit-image's wheel, by the class folder they go in (10 images, 6 classes).
PHOTOS = {
    "cat": ["chelsea.png"],
    "person": ["astronaut.png", "camera.png"],
    "cup": ["coffee.png"],
    "rocket": ["rocket.jpg"],
    "motorcycle": ["motorcycle_left.png", "motorcycle_right.png"],
    "texture": ["brick.png", "grass.png", "gravel.png"],
}
FILES = [(label, name) for label, names in PHOTOS.items() for name in names]
#: 1000 made-up WordNet ids, sorted: ImageNet class i is WNIDS[i].
WNIDS = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
#: The concept words of the captions dataset (its captions are "a photo of a {class folder}").
WORDS = [*PHOTOS, "photo"]
#: The PASCAL Context images: image i's mask holds background and the Context-59 classes i + 1 and 20 + i.
CONTEXT = [f"2008_{i:06d}" for i in range(6)]
TARGETS = [
    "results/selectivity/tiny-vit/photos/units.tsv",
    "results/zeroshot/tiny-vit/photos/accuracy.tsv",
    "results/zeroshot/tiny-vit/imnet/accuracy.tsv",
    "results/datasets/captioned/data",
    "results/patching/tiny-vit/photos/auroc.png",
    "results/patching/tiny-vit/captioned/auroc.png",
    "results/patching/tiny-vit/captioned/runs.tsv",
    "results/selectivity/tiny-vit/context/units.tsv",
    "results/pascal-context-59/tiny-rn/miou.tsv",
    "results/decomposition/tiny-rn/imnet/ablation.png",
    "results/decomposition/tiny-rn/imnet/sparse_accuracy.png",
]


def photo(name: str) -> Path:
    return Path(skimage.__file__).parent / "data" / name


def write_trees(root: Path) -> None:
    """An imagefolder tree, a partial ImageNet val copy in class folders, and an open_clip captions CSV."""
    for label, name in FILES:
        (root / "photos" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo(name), root / "photos" / label / name)
    for wnid in WNIDS:
        (root / "imagenet" / "val" / wnid).mkdir(parents=True)
    for i, (_, name) in enumerate(FILES[:5]):
        suffix = Path(name).suffix
        shutil.copy(photo(name), root / "imagenet" / "val" / WNIDS[7 * i] / f"ILSVRC2012_val_{i + 1:08d}{suffix}")
    rows = [{"filepath": f"photos/{label}/{name}", "title": f"a photo of a {label}"} for label, name in FILES]
    pd.DataFrame(rows).to_csv(root / "captions.csv", sep="\t", index=False)
    fake_pascal_context(root / "VOC2010", CONTEXT, size=(48, 64))
    for i, name in enumerate(CONTEXT):
        mask = np.random.default_rng(i).choice(np.asarray([0, i + 1, 20 + i], dtype=np.uint8), size=(48, 64))
        Image.fromarray(mask).save(root / "VOC2010" / "SegmentationClassContext" / f"{name}.png")


def natural_config(root: Path) -> Path:
    config = {
        "datasets": {
            "photos": {"kind": "imagefolder", "root": str(root / "photos")},
            "imnet": {"kind": "imagenet", "root": str(root / "imagenet"), "split": "val", "n_images": 4, "seed": 1},
            "captioned": {"kind": "captions", "path": str(root / "captions.csv"), "words": WORDS},
            "context": {"kind": "pascal_context", "root": str(root / "VOC2010")},
        },
        "analyses": {"models": ["tiny-vit"], "datasets": ["tiny-shapes", "photos", "context"]},
        "zeroshot": {"models": ["tiny-vit"], "templates": ["a photo of a {}.", "a picture of a {}."]},
        # Causal tracing on the captions too (methods.md Sec. 8.1): embedding corruptions only, foils of WORDS.
        "patching": {
            "datasets": ["tiny-shapes-pairs", "captioned"],
            "corruptions": ["noise"],
            "concepts": {"datasets": ["tiny-shapes-pairs", "photos", "captioned"]},
        },
        # tiny-rn's input is 128 pixels: the 48 x 64 images are resized to 128 x 171, two windows each.
        # The ImageNet copy decomposed too (methods.md Sec. 5.2): scored zero-shot over its 1000 classes.
        "decomposition": {
            "datasets": ["tiny-shapes", "imnet"],
            "pascal_context": {"dataset": "context", "scale": [512, 128], "crop_size": 128, "stride": 64, "top_k": 64},
        },
    }
    path = root / "natural.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def natural_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("natural-run")
    data = tmp_path_factory.mktemp("natural-data")
    write_trees(data)
    extra = natural_config(data)
    planned = planned_jobs("--configfile", TINY, extra, workdir=workdir)
    snakemake(*TARGETS, "--cores", "2", "--configfile", TINY, extra, workdir=workdir)
    return workdir, data, extra, planned


def test_causal_tracing_of_the_captions_against_their_foils(natural_run):
    workdir, _, _, planned = natural_run
    assert planned["patch_components"] == 4  # both patching models on the pairs and on the captions
    runs = pd.read_csv(workdir / "results/patching/tiny-vit/captioned/runs.tsv", sep="\t")
    assert runs.groupby(["corruption", "tower"])["pair_id"].apply(list).to_dict() == {
        ("noise", "visual"): [0, 1],
        ("noise", "text"): [0, 1],
    }  # tiny.yaml's n_pairs: the first two photographs, whose captions all name a word of WORDS
    assert runs["caption"].tolist() == [f"a photo of a {label}" for label, _ in FILES[:2]] * 2
    for caption, foil in zip(runs["caption"], runs["foil"], strict=True):
        changed = [(c, f) for c, f in zip(caption.split(), foil.split(), strict=True) if c != f]
        assert len(changed) == 1 and changed[0][1] in WORDS and changed[0][1] not in caption.split()


def test_the_imagenet_copy_is_decomposed_and_scored_over_its_classes(natural_run):
    workdir, _, _, planned = natural_run
    assert planned["ablate_components"] == planned["decompose_text"] == 2  # Shapes and the ImageNet copy
    base = workdir / "results/decomposition/tiny-rn/imnet"
    tasks = pd.read_csv(base / "ablation_tasks.tsv", sep="\t")
    assert tasks.to_dict("list") == {"task": ["class"], "n_classes": [1000], "n_images": [4]}
    assert set(pd.read_csv(base / "ablation.tsv", sep="\t")["task"]) == {"class"}
    assert set(pd.read_csv(base / "sparse_accuracy.tsv", sep="\t")["task"]) == {"class"}


def test_the_full_dag_plans_every_natural_dataset(natural_run):
    _, _, _, planned = natural_run
    assert planned["index_images"] == 4
    assert planned["zero_shot"] == 2
    assert planned["zero_shot_classifier"] == 3  # and tiny-rn's on imnet, which the decomposition scores with
    # The store and Algorithm 1 on the photographs and PASCAL Context too; the rest of the shapes-paper track on
    # Shapes only; PASCAL Context-59 segmented by the decomposed model.
    assert planned["extract_activations"] == planned["neuron_selectivity"] == 3
    assert planned["segment_pascal_context"] == 1
    assert planned["plot_selectivity"] == planned["superposition_separability"] == planned["plot_dataset"] == 1


def test_algorithm_1_over_the_folder_classes(natural_run):
    workdir, _, _, _ = natural_run
    units = pd.read_csv(workdir / "results/selectivity/tiny-vit/photos/units.tsv", sep="\t")
    assert [c for c in units.columns if c.startswith("a_")] == [f"a_{label}" for label in sorted(PHOTOS)]
    assert units[[f"a_{label}" for label in PHOTOS]].sum(axis=1).round(6).eq(1).all()
    assert units["top1"].isin(list(PHOTOS)).all() and (units["entropy"] <= np.log(len(PHOTOS)) + 1e-9).all()


def test_manifests_of_each_kind(natural_run):
    workdir, data, _, _ = natural_run
    photos = datasets.load(workdir / "results/datasets/photos/data")
    assert photos.spec["kind"] == "imagefolder" and photos.n_images == len(FILES)
    assert sorted(photos.classes["name"]) == sorted(PHOTOS)
    imnet = datasets.load(workdir / "results/datasets/imnet/data")
    assert imnet.n_images == 4 and len(imnet.classes) == 1000
    assert set(imnet.manifest["label"]) <= {7 * i for i in range(5)}
    captioned = datasets.load(workdir / "results/datasets/captioned/data")
    assert captioned.n_images == len(FILES) and captioned.manifest["captions"].map(len).tolist() == [1] * len(FILES)
    # Nothing was written into the user's folders.
    assert not any(p.name.endswith((".parquet", ".json")) for p in data.rglob("*"))


def test_pascal_context_is_indexed_analysed_and_segmented(natural_run):
    workdir, data, _, _ = natural_run
    context = datasets.load(workdir / "results/datasets/context/data")
    assert context.n_images == len(CONTEXT) and len(context.classes) == 59
    assert context.manifest["mask"].tolist() == [f"SegmentationClassContext/{name}.png" for name in CONTEXT]
    assert [list(c) for c in context.manifest["categories"]] == [[i, 19 + i] for i in range(len(CONTEXT))]
    # Algorithm 1 over the 59 categories (several per image).
    units = pd.read_csv(workdir / "results/selectivity/tiny-vit/context/units.tsv", sep="\t")
    names = context.classes["name"].tolist()
    assert [c for c in units.columns if c.startswith("a_")] == [f"a_{name}" for name in names]
    assert units["top1"].isin([names[i] for c in context.manifest["categories"] for i in c]).all()
    miou = pd.read_csv(workdir / "results/pascal-context-59/tiny-rn/miou.tsv", sep="\t")
    assert (miou["n_images"] == len(CONTEXT)).all() and miou["miou"].between(0, 1).all()


def test_zero_shot_tables(natural_run):
    workdir, _, _, _ = natural_run
    for name, n, n_classes in (("photos", len(FILES), len(PHOTOS)), ("imnet", 4, 1000)):
        accuracy = pd.read_csv(workdir / f"results/zeroshot/tiny-vit/{name}/accuracy.tsv", sep="\t")
        assert accuracy[["model", "dataset", "n", "n_classes", "n_templates"]].values.tolist() == [
            ["tiny-vit", name, n, n_classes, 2]
        ]
        assert 0 <= accuracy.loc[0, "top1"] <= accuracy.loc[0, "top5"] <= 1
        per_class = pd.read_csv(workdir / f"results/zeroshot/tiny-vit/{name}/per_class.tsv", sep="\t")
        assert len(per_class) == n_classes and per_class["n"].sum() == n


def test_a_second_run_plans_nothing(natural_run):
    workdir, _, extra, _ = natural_run
    assert planned_jobs(*TARGETS, "--configfile", TINY, extra, workdir=workdir) == {}


def test_new_templates_rerun_the_classifiers_and_what_scores_with_them(natural_run, tmp_path):
    workdir, data, _, _ = natural_run
    config = yaml.safe_load(natural_config(data).read_text())
    config["zeroshot"]["templates"] = ["itap of a {}."]
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(config))
    assert planned_jobs(*TARGETS, "--configfile", TINY, path, workdir=workdir) == {
        "zero_shot_classifier": 3,
        "zero_shot": 2,
        # The ImageNet copy's decomposition is scored with tiny-rn's classifier; the Shapes one is not.
        "ablate_components": 1,
        "plot_ablation": 1,
        "decompose_text": 1,
        "plot_sparse_accuracy": 1,
    }


def test_concept_auroc_of_the_photographs_and_their_captions(natural_run):
    workdir, _, _, planned = natural_run
    # Both patching models on the pairs and the two natural datasets; the interventions on the pairs only.
    assert planned["concept_auroc"] == planned["plot_concepts"] == 6
    assert planned["intervene_concepts"] == planned["plot_interventions"] == 2
    for name, concepts in (("photos", sorted(PHOTOS)), ("captioned", WORDS)):
        base = workdir / "results/patching/tiny-vit" / name
        table = pd.read_csv(base / "auroc.tsv", sep="\t")
        assert list(dict.fromkeys(table["concept"])) == concepts
        assert ((table["n_pos"] + table["n_neg"]) == len(FILES)).all()  # every photograph has a class and a caption
        assert table.loc[table["concept"] != "photo", "auroc"].between(0, 1).all()
        assert table.loc[table["concept"] == "photo", "auroc"].isna().all()  # in every caption: no negatives
        summary = pd.read_csv(base / "auroc_summary.tsv", sep="\t")
        assert set(summary["tower"]) == {"visual", "text"} and set(summary["concept"]) == set(concepts)
        assert Image.open(base / "auroc.png").size[0] > 0
        assert not (base / "interventions.tsv").exists()


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("results/superposition/tiny-vit/photos/pairs.tsv", "photos is a natural-image dataset (kind imagefolder)"),
        ("results/patching/tiny-vit/photos/interventions.png", "photos is a natural-image dataset (kind imagefolder)"),
        (
            "results/patching/tiny-vit/tiny-shapes-shift/auroc.png",
            "rule concept_auroc: dataset 'tiny-shapes-shift' is of kind shift, which has no concepts",
        ),
    ],
    ids=["superposition", "interventions", "auroc-of-shift"],
)
def test_an_output_a_dataset_cannot_have_is_refused_with_the_reason(natural_run, target, reason):
    workdir, _, extra, _ = natural_run
    result = snakemake(target, "-n", "--configfile", TINY, extra, workdir=workdir, check=False)
    assert result.returncode != 0
    assert reason in result.stderr + result.stdout


# --- the atlas of the photographs (issue 21) -----------------------------------------------------------

ATLAS = "results/atlas/tiny-vit"


def atlas_config(root: Path, **atlas) -> Path:
    """The natural config with atlas.dataset the photographs (default models: tiny-vit; tiny-rn is decomposed)."""
    config = yaml.safe_load(natural_config(root).read_text())
    config["atlas"] = {"dataset": "photos", **atlas}
    path = root / f"atlas-{len(atlas)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def natural_atlas(natural_run):
    """The natural run's directory with the atlas of the photographs built (after the tests above)."""
    workdir, data, _, _ = natural_run
    extra = atlas_config(data)
    everything = planned_jobs("--configfile", TINY, extra, workdir=workdir)
    planned = planned_jobs(f"{ATLAS}.tsv", "--configfile", TINY, extra, workdir=workdir)
    snakemake(f"{ATLAS}.tsv", "--cores", "2", "--configfile", TINY, extra, workdir=workdir)
    return workdir, data, everything, planned


def test_the_atlas_of_the_photographs_reads_their_store_and_classes(natural_atlas):
    workdir, _, everything, planned = natural_atlas
    assert everything["build_atlas"] == planned["build_atlas"] == 1  # tiny-vit only: tiny-rn is decomposed
    # The photographs' store and units.tsv exist already; the SAE, MiCLIP and patching tables are their own.
    assert "neuron_selectivity" not in planned and "decompose_attnpool" not in planned
    assert {"train_sae", "evaluate_sae", "evaluate_miclip"} <= set(planned)
    site = workdir / ATLAS
    manifest = json.loads((site / "manifest.json").read_text())
    assert set(manifest["pages"]) == {"mlp", "sae"}
    index = (site / "index.html").read_text()
    assert "<dt>concepts</dt><dd>6 folder classes: " + ", ".join(sorted(PHOTOS)) + "</dd>" in index
    thumbnails = sorted((site / "images").iterdir())
    assert thumbnails and all(Image.open(p).size == (32, 32) for p in thumbnails)  # tiny.yaml's thumbnail_size
    page = next((site / "units" / "mlp").iterdir()).read_text()
    assert f"<dd>photos (imagefolder photographs): all {len(FILES)} images</dd>" in page
    assert "<h2>Concept affinities: the folder classes (Algorithm 1 over the top images;" in page
    assert "SAE concept alignment on tiny-shapes" in next((site / "units" / "sae").iterdir()).read_text()


def test_a_resnet_atlas_of_the_photographs_is_refused_with_the_reason(natural_atlas):
    workdir, data, _, _ = natural_atlas
    extra = atlas_config(data, models=["tiny-vit", "tiny-rn"])
    result = snakemake("-n", "--configfile", TINY, extra, workdir=workdir, check=False)
    assert result.returncode != 0
    assert "atlas.models names the CLIP-ResNet(s) ['tiny-rn']" in result.stderr + result.stdout


def test_a_unit_page_of_the_photographs_in_chromium(natural_atlas, visit, tmp_path):  # noqa: F811
    workdir, _, _, _ = natural_atlas
    v = visit()
    page = v.open(workdir / ATLAS / "index.html")
    href = page.eval_on_selector("#units tbody tr[data-kind='mlp'][data-page='1'] a", "a => a.href")
    page.goto(href)
    page.wait_for_load_state("load")
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert sizes and all(n == 32 for n in sizes)
    assert page.locator("table.affinity tr").count() <= len(PHOTOS)
    drawn = page.eval_on_selector_all("canvas.heat", "cs => cs.map(c => c.width * c.height)")
    assert drawn and all(n > 0 for n in drawn)  # every photograph has its heatmap
    shot = tmp_path / "atlas-natural-unit.png"
    page.screenshot(path=shot, full_page=True)
    assert v.problems == []
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / shot.name)
    print(f"atlas screenshot of a photographs' unit page: {ARTIFACTS / shot.name}")


# --- an SAE trained and evaluated on the photographs ---------------------------------------------------

SAE = "results/sae/tiny-vit/photos/visual.blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def natural_sae(natural_atlas):
    """The natural run's directory with tiny.yaml's SAE trained and evaluated on the photographs, listed first
    in analyses.datasets (MiCLIP keeps tiny-shapes), after the atlas, whose SAE trained on tiny-shapes."""
    workdir, data, _, _ = natural_atlas
    config = yaml.safe_load(natural_config(data).read_text())
    config["analyses"]["datasets"] = ["photos", "tiny-shapes"]
    config["miclip"] = {"dataset": "tiny-shapes"}
    extra = data / "sae-photos.yaml"
    extra.write_text(yaml.safe_dump(config))
    targets = [f"{SAE}/top_images.png", f"{SAE}/training.png"]
    planned = planned_jobs(*targets, "--configfile", TINY, extra, workdir=workdir)
    snakemake(*targets, "--cores", "2", "--configfile", TINY, extra, workdir=workdir)
    return workdir, planned


def test_an_sae_trains_and_evaluates_on_the_photographs(natural_sae):
    workdir, planned = natural_sae
    # The photographs' store and classifier exist: only the SAE's own jobs run.
    assert set(planned) == {"train_sae", "plot_sae_training", "evaluate_sae", "plot_sae_evaluation"}
    # Beside the atlas's SAE on tiny-shapes (analyses.datasets[0] there), not over it.
    shapes_sae = workdir / SAE.replace("/photos/", "/tiny-shapes/")
    assert (shapes_sae / "checkpoint.pt").is_file() and (shapes_sae / "latents.tsv").is_file()
    metrics = json.loads((workdir / SAE / "metrics.json").read_text())
    assert metrics["concepts"] == {"source": "folder classes", "n_concepts": len(PHOTOS), "patch_level": False}
    assert metrics["n_holdout_images"] == 1 and metrics["n_split_images"] == len(FILES)  # tiny.yaml: split all
    down = metrics["downstream"]
    assert down["n_images"] == len(FILES) and down["n_classes"] == len(PHOTOS)
    assert down["error_term_max_abs_diff"] == 0.0
    zero_shot = pd.DataFrame(down["zero_shot"]).set_index("condition")
    assert set(zero_shot["task"]) == {"class"} and zero_shot.loc["sae_error", "kl"] == 0.0
    alignment = pd.read_csv(workdir / SAE / "alignment.tsv", sep="\t")
    assert alignment["mean_best_auroc_patch"].isna().all() and alignment["mean_best_auroc_image"].between(0, 1).all()
    assert metrics["alignment"]["sae"]["per_concept"]["concept"] == sorted(PHOTOS)
    latents = pd.read_csv(workdir / SAE / "latents.tsv", sep="\t")
    assert set(latents.loc[~latents["dead"], "top_concept"].dropna()) <= set(PHOTOS)
    with np.load(workdir / SAE / "top_latents.npz") as record:
        assert record["images"].shape[2:] == (64, 64, 3)  # the photographs at tiny-vit's input size
    assert Image.open(workdir / SAE / "top_images.png").size[0] > 0


# --- MiCLIP on the photographs ---------------------------------------------------------------------------

MICLIP = "results/miclip/tiny-vit/photos/visual.blocks.1.hook_mlp_out"


@pytest.fixture(scope="module")
def natural_miclip(natural_run):
    """The natural run's directory with MiCLIP's tiny-vit neurons probed, trained and evaluated on the
    photographs (methods.md Sec. 9.8), Delta Acc with the classifier of the natural run."""
    workdir, data, _, _ = natural_run
    config = yaml.safe_load(natural_config(data).read_text())
    config["miclip"] = {
        "dataset": "photos",
        "units": {"tiny-vit": [{"site": "visual.blocks.1.hook_mlp_out", "kind": "neurons"}]},
    }
    extra = data / "miclip-photos.yaml"
    extra.write_text(yaml.safe_dump(config))
    targets = [f"{MICLIP}/neurons/descriptions.png", f"{MICLIP}/neurons/delta_acc.png", f"{MICLIP}/training.png"]
    planned = planned_jobs(*targets, "--configfile", TINY, extra, workdir=workdir)
    snakemake(*targets, "--cores", "2", "--configfile", TINY, extra, workdir=workdir)
    return workdir, planned


def test_miclip_describes_neurons_with_the_folder_classes(natural_miclip):
    workdir, planned = natural_miclip
    assert {"probe_miclip", "embed_miclip_concepts", "train_miclip", "evaluate_miclip", "plot_miclip"} <= set(planned)
    with np.load(workdir / MICLIP / "probe.npz") as probe:
        assert "site_acts" not in probe and probe["image_acts"].shape[0] == len(FILES)
    descriptions = pd.read_csv(workdir / MICLIP / "neurons" / "descriptions.tsv", sep="\t")
    concepts = descriptions.loc[descriptions["vocabulary"] == "concepts", "concept"]
    assert len(concepts) and set(concepts) <= set(PHOTOS)
    accuracy = pd.read_csv(workdir / MICLIP / "neurons" / "description_accuracy.tsv", sep="\t")
    assert accuracy["accuracy_mean"].dropna().between(0, 1).all()
    # Delta Acc on each folder class's held-out photographs, classified with tiny-vit's zero-shot classifier.
    interventions = pd.read_csv(workdir / MICLIP / "neurons" / "interventions.tsv", sep="\t")
    assert len(interventions) and set(interventions["concept"]) <= set(PHOTOS)
    assert interventions["accuracy_before"].between(0, 1).all()
