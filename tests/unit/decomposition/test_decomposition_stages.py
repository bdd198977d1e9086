"""The decomposition's compute stages write what their plot stages draw: the plot rules read tables and npz
files only, so editing a figure module reruns the plot rule, not the computation (tests/unit/test_codehash.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from clipmech import artefacts
from clipmech.decomposition import components
from clipmech.figures import ablation as ablation_figures
from clipmech.models.loading import ModelSpec
from clipmech.stores import attnpool as pool_store
from clipmech.stores import attnpool_extraction

RANDOM_RN = ModelSpec("rand-rn", "clipmech-rn-tiny", None)


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_dataset):
    path = tmp_path_factory.mktemp("attnpool") / "store.zarr"
    return str(
        attnpool_extraction.extract_attnpool(RANDOM_RN, tiny_dataset, path, batch_size=5, device="cpu", code="t")
    )


def test_decompose_attnpool_writes_the_scores_plot_decomposition_draws(store, tmp_path):
    from clipmech.stages.decompose_attnpool import decompose_attnpool
    from clipmech.stages.plot_decomposition import plot_decomposition

    out = {
        "pairs": str(tmp_path / "pairs.tsv"),
        "summary": str(tmp_path / "summary.json"),
        "scores": str(tmp_path / "scores.npz"),
    }
    decompose_attnpool(
        store=store, out=out, decomposition={"chunk_size": 4, "n_checked": 10, "pc_top_k": 5, "max_rel_err": 1e-3}
    )
    assert artefacts.record_path(out["scores"]).exists()
    scores, cos_pc_u = components.load_component_scores(out["scores"], rule="decompose_attnpool")
    ds = pool_store.open_store(store)
    sums = components.ScoreSums(pool_store.parts(ds).u_HCE)
    for _, s_NHC in pool_store.iter_scalars(ds, 4):
        sums.add(s_NHC)
    expected = sums.scores()
    assert list(scores) == list(expected) == list(components.LEVELS)  # the legend's order
    for level in components.LEVELS:
        np.testing.assert_array_equal(scores[level], expected[level])  # unrounded, unlike pairs.tsv
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert scores["pair"].shape == (summary["n_heads"], summary["n_neurons"]) and len(cos_pc_u) == 10
    figure = tmp_path / "norms.png"
    plot_decomposition(summary=out["summary"], scores=out["scores"], out={"figure": str(figure)}, label="test")
    assert _is_png(figure)


def _decompose(store, path, chunk_size):
    from clipmech.stages.decompose_attnpool import decompose_attnpool

    path.mkdir()
    out = {
        name: str(path / f"{name}.{ext}") for name, ext in (("pairs", "tsv"), ("summary", "json"), ("scores", "npz"))
    }
    decompose_attnpool(
        store=store,
        out=out,
        decomposition={"chunk_size": chunk_size, "n_checked": 12, "pc_top_k": 5, "max_rel_err": 1e-3},
    )
    scores, cos_pc_u = components.load_component_scores(out["scores"], rule="decompose_attnpool")
    return pd.read_csv(out["pairs"], sep="\t"), json.loads(path.joinpath("summary.json").read_text()), scores, cos_pc_u


def test_decompose_attnpool_streams_the_same_outputs_for_any_chunk_size(store, tmp_path):
    """Chunk sums change the scores only by rounding (rtol 1e-12); one chunk of all images is the in-memory
    computation (scores of :func:`components.component_scores`, rank-1 checks of all images' scalars)."""
    ds = pool_store.open_store(store)
    s_NHC, _ = pool_store.pair_scalars(ds, 1000)
    u_HCE = pool_store.parts(ds).u_HCE
    pairs_1, summary_1, scores_1, cos_1 = _decompose(store, tmp_path / "one", 1)
    pairs_all, summary_all, scores_all, cos_all = _decompose(store, tmp_path / "all", 1000)
    in_memory = components.component_scores(s_NHC, u_HCE)
    for level in components.LEVELS:
        np.testing.assert_array_equal(scores_all[level], in_memory[level])
        np.testing.assert_allclose(scores_1[level], in_memory[level], rtol=1e-12, atol=0)
    np.testing.assert_allclose(cos_1, cos_all, rtol=1e-12)
    assert len(cos_1) == 12 and np.isfinite(cos_1).all()
    # the table: same pairs in the same order; floats as written (6 significant digits)
    pd.testing.assert_frame_equal(pairs_1, pairs_all, rtol=1e-5, atol=1e-12)
    checked = pairs_all.iloc[:12]
    expected = components.pair_rank_one(s_NHC, u_HCE, checked["head"], checked["neuron"], 5)
    np.testing.assert_allclose(checked["cos_pc_u"], expected["cos_pc_u"], rtol=1e-5)
    # the reconstruction errors are rounding (~1e-7 of ||y||, y stored in float32): the matmul of another chunk
    # size rounds y_hat otherwise, by ~1e-16 of ||y||, hence the absolute tolerance
    assert summary_1.keys() == summary_all.keys()
    for key, value in summary_all.items():
        if isinstance(value, float):
            np.testing.assert_allclose(summary_1[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
        elif isinstance(value, dict):
            for level in value:
                np.testing.assert_allclose(summary_1[key][level], value[level], rtol=1e-12, err_msg=key)
        else:
            assert summary_1[key] == value, key


def test_find_registers_writes_the_sample_plot_registers_draws(store, tmp_path):
    from clipmech.stages.find_registers import find_registers
    from clipmech.stages.plot_registers import plot_registers

    out = {name: str(tmp_path / f"{name}.tsv") for name in ("tokens", "neurons", "sample")}
    find_registers(store=store, out=out, registers={"n_images": 4, "chunk_size": 64})
    sample = pd.read_csv(out["sample"], sep="\t")
    grid = pool_store.parts(pool_store.open_store(store)).grid
    assert sample.to_dict("records") == [{"n_images": 4, "grid_rows": grid[0], "grid_cols": grid[1]}]
    figure = tmp_path / "attention_sink.png"
    plot_registers(**out, out={"figure": str(figure)}, n_figure_neurons=5, label="test")
    assert _is_png(figure)


def test_plot_ablation_draws_chance_from_the_number_of_classes(tmp_path):
    """The chance level is 1 / n_classes as the compute stage had it in memory: the same figure, byte for byte."""
    from clipmech.stages.plot_ablation import plot_ablation

    table = pd.DataFrame(
        [
            {"level": level, "fraction": fraction, "task": task, "accuracy": 0.5 * fraction + 0.2}
            for task in ("colour", "shape")
            for level in ("pair", "neuron", "head", "neuron_activation")
            for fraction in (0.0, 0.5, 1.0)
        ]
    )
    table.to_csv(tmp_path / "ablation.tsv", sep="\t", index=False)
    tasks = pd.DataFrame({"task": ["colour", "shape"], "n_classes": [6, 3], "n_images": [7, 7]})
    tasks.to_csv(tmp_path / "tasks.tsv", sep="\t", index=False)
    figure = tmp_path / "ablation.png"
    plot_ablation(
        table=str(tmp_path / "ablation.tsv"), tasks=str(tmp_path / "tasks.tsv"), out={"figure": str(figure)}, label="t"
    )
    ablation_figures.ablation_curves(
        table,
        {"colour": 1.0 / 6, "shape": 1.0 / 3},
        "t: mean-ablation of all but the top components (7 single-object images)",
        tmp_path / "direct.png",
    )
    assert figure.read_bytes() == (tmp_path / "direct.png").read_bytes()


def test_plot_sparse_accuracy_counts_the_words_of_the_text_embeddings(tmp_path, monkeypatch):
    from clipmech.stages import plot_sparse_accuracy as stage

    rows = [{"level": "model", "directions": "exact", "m": np.nan, "task": "colour", "accuracy": 0.9}]
    for level in ("pair", "neuron"):
        rows.append({"level": level, "directions": "exact", "m": np.nan, "task": "colour", "accuracy": 0.8})
        rows += [
            {"level": level, "directions": "sparse", "m": m, "task": "colour", "accuracy": 0.1 * m} for m in (1, 4)
        ]
    pd.DataFrame(rows).to_csv(tmp_path / "sparse_accuracy.tsv", sep="\t", index=False)
    text_path = tmp_path / "embeddings.npz"
    artefacts.save_npz(text_path, rule="embed_text", words=np.array(["red", "square", "left"]))
    titles = []
    monkeypatch.setattr(
        stage.sparse_accuracy_figures, "sparse_accuracy", lambda table, title, path: titles.append(title)
    )
    stage.plot_sparse_accuracy(
        accuracy=str(tmp_path / "sparse_accuracy.tsv"),
        text_path=str(text_path),
        out={"figure": str(tmp_path / "sparse_accuracy.png")},
        keep_fraction=0.2,
        label="t",
    )
    assert titles == ["t: top 20% of pairs / neurons kept, directions from m of 3 words"]
    monkeypatch.undo()
    stage.plot_sparse_accuracy(
        accuracy=str(tmp_path / "sparse_accuracy.tsv"),
        text_path=str(text_path),
        out={"figure": str(tmp_path / "sparse_accuracy.png")},
        keep_fraction=0.2,
        label="t",
    )
    assert _is_png(tmp_path / "sparse_accuracy.png")


def test_plot_shift_draws_the_tables_of_monitor_shift(tmp_path):
    from clipmech.stages.plot_shift import plot_shift

    splits = pd.DataFrame(
        [
            {"concept": c, "split": s, "true_share": 0.2 * s, "mean_score": 0.1 * s, "sd_score": 0.05}
            for c in ("red", "circle")
            for s in range(3)
        ]
    )
    correlations = pd.DataFrame(
        {"concept": ["red", "circle"], "point_biserial_r": [0.5, np.nan], "split_pearson_r": [0.9, 0.1]}
    )
    splits.to_csv(tmp_path / "splits.tsv", sep="\t", index=False)
    correlations.to_csv(tmp_path / "correlations.tsv", sep="\t", index=False)
    figure = tmp_path / "shift.png"
    plot_shift(
        splits=str(tmp_path / "splits.tsv"),
        correlations=str(tmp_path / "correlations.tsv"),
        out={"figure": str(figure)},
        top_k=8,
        label="t",
    )
    assert _is_png(figure)


def _text_embeddings(path, n_embed):
    """Random prompt embeddings of the zero-shot attribute tasks, saved as rule embed_text saves them."""
    from clipmech.models import zeroshot

    tasks, classes = [], []
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, _ = zeroshot.attribute_prompts(task)
        tasks += [task] * len(names)
        classes += list(names)
    embeddings = np.random.default_rng(0).standard_normal((len(classes), n_embed)).astype(np.float32)
    artefacts.save_npz(
        path,
        rule="embed_text",
        prompt_task=np.array(tasks),
        prompt_class=np.array(classes),
        prompt_embeddings=embeddings,
    )
    return str(path)


@pytest.fixture
def written_tables(monkeypatch):
    """The tables the stages write, unrounded, by path (``tables.write_table`` rounds to six digits)."""
    from clipmech.data import tables

    written = {}
    monkeypatch.setattr(tables, "write_table", lambda table, path: written.__setitem__(path, table))
    return written


def test_ablate_components_streams_the_curves_of_all_images_at_once(store, tiny_dataset, tmp_path, written_tables):
    """The two streamed passes give, for any chunk size, exactly the accuracies of the in-memory computation:
    scores, mean scalars and mean tokens of all images, ablated outputs of all evaluated images at once."""
    from clipmech.data import datasets
    from clipmech.decomposition import pool
    from clipmech.stages.ablate_components import ablate_components
    from clipmech.stages.embed_text import load_text

    ds = pool_store.open_store(store)
    text = _text_embeddings(tmp_path / "embeddings.npz", ds.sizes["embed"])
    fractions = [0.0, 0.1, 0.5, 1.0]
    written = {}
    for chunk in (1, 3, 100):
        out = {"table": str(tmp_path / f"ablation{chunk}.tsv"), "tasks": str(tmp_path / f"tasks{chunk}.tsv")}
        ablate_components(
            store=store,
            dataset_dir=str(tiny_dataset),
            text_path=text,
            out=out,
            ablation={"fractions": fractions},
            chunk_size=chunk,
        )
        written[chunk] = written_tables[out["table"]], written_tables[out["tasks"]]
    for chunk in (3, 100):
        pd.testing.assert_frame_equal(written[chunk][0], written[1][0])
        pd.testing.assert_frame_equal(written[chunk][1], written[1][1])

    parts = pool_store.parts(ds)
    tasks = components.zero_shot_tasks(datasets.load(tiny_dataset), load_text(text))
    evaluated, local = components.evaluated_images(tasks)
    s_NHC, y_NE = pool_store.pair_scalars(ds, 100)
    x_NTC = ds["x"].values.astype(np.float64)
    scores = components.component_scores(s_NHC, parts.u_HCE)
    rows = []
    for level in (*components.LEVELS, "neuron_activation"):
        for fraction in fractions:
            keep = pool.top_fraction_mask(scores[level.removesuffix("_activation")], fraction)
            if level == "neuron_activation":
                y_ME = components.activation_ablated_outputs(x_NTC[evaluated], x_NTC.mean(0), keep, parts.weights)
            else:
                y_ME = pool.mean_ablate(
                    s_NHC[evaluated], parts.u_HCE, parts.bias_E, keep, level=level, s_mean_HC=s_NHC.mean(0)
                )
            rows += [
                {
                    "level": level,
                    "fraction": fraction,
                    "n_kept": int(keep.sum()),
                    "n_components": keep.size,
                    "task": local_task.name,
                    "accuracy": components.zero_shot_accuracy(y_ME, local_task),
                    "model_accuracy": components.zero_shot_accuracy(y_NE, task),
                }
                for task, local_task in zip(tasks, local)
            ]
    table = written[1][0]
    expected = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert written[1][1].to_dict("list") == {
        "task": [task.name for task in tasks],
        "n_classes": [len(task.classes) for task in tasks],
        "n_images": [len(task.images) for task in tasks],
    }


@pytest.fixture(scope="module")
def shift_store(tmp_path_factory):
    """A 12-image shift dataset (3 splits of 4, shares of red and circle changing) and its attention-pool store."""
    from clipmech.data import shift

    directory = tmp_path_factory.mktemp("shift")
    spec = shift.ShiftSpec(
        concepts=("red", "circle"), shares=((0.25, 0.75), (0.5, 0.5), (1.0, 0.25)), n_per_split=4, image_size=64
    )
    shift.build(directory / "splits", spec)
    store = attnpool_extraction.extract_attnpool(
        RANDOM_RN, directory / "splits", directory / "store.zarr", batch_size=5, device="cpu", code="t"
    )
    return str(directory / "splits"), str(store)


def test_monitor_shift_streams_the_scores_of_all_images_at_once(shift_store, tmp_path, written_tables):
    """The tables of the streamed stage, for any chunk size, equal those of the concept scores of all images
    at once within rtol 1e-12 (a chunk's matrix product may round differently from all images')."""
    from clipmech.data import datasets, shapes
    from clipmech.data import shift as shift_data
    from clipmech.decomposition import monitoring, pool
    from clipmech.stages.embed_text import load_text
    from clipmech.stages.monitor_shift import monitor_shift

    dataset_dir, store = shift_store
    ds = pool_store.open_store(store)
    text = _text_embeddings(tmp_path / "embeddings.npz", ds.sizes["embed"])
    written = {}
    for chunk in (1, 5, 100):
        out = {"splits": str(tmp_path / f"splits{chunk}.tsv"), "correlations": str(tmp_path / f"corr{chunk}.tsv")}
        monitor_shift(
            store=store, dataset_dir=dataset_dir, text_path=text, out=out, shift={"top_k": 6}, chunk_size=chunk
        )
        written[chunk] = [written_tables[out[name]] for name in ("splits", "correlations")]

    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, 100)
    spec = shift_data.load_spec(dataset_dir)
    scores_NF = np.zeros((12, 2))
    for f, concept in enumerate(spec.concepts):
        classes, z_KE = components.task_text(load_text(text), "colour" if concept in shapes.COLOURS else "shape")
        heads, neurons, _ = pool.top_pairs_by_text(parts.u_HCE, z_KE[[classes.index(concept)]], 6)
        scores_NF[:, f] = monitoring.concept_scores(s_NHC, parts.u_HCE, y_NE, heads[0], neurons[0])
    data = datasets.load(dataset_dir)
    expected = monitoring.shift_tables(spec, scores_NF, shift_data.presence(data.objects, spec.concepts, 12))
    for chunk, tables in written.items():
        for table, reference in zip(tables, expected):
            assert len(table) == len(reference) and table.notna().to_numpy().any()
            pd.testing.assert_frame_equal(table, reference, check_exact=False, rtol=1e-12, atol=0)


def test_decompose_attnpool_refuses_a_store_it_does_not_reproduce_before_writing(store, tmp_path):
    from clipmech.stages.decompose_attnpool import decompose_attnpool

    out = {"pairs": str(tmp_path / "pairs.tsv"), "summary": str(tmp_path / "summary.json")}
    out["scores"] = str(tmp_path / "scores.npz")
    with pytest.raises(RuntimeError, match="max_rel_err=0"):
        decompose_attnpool(
            store=store, out=out, decomposition={"chunk_size": 4, "n_checked": 10, "pc_top_k": 5, "max_rel_err": 0.0}
        )
    assert not list(tmp_path.iterdir())


# --- a natural-image dataset with classes: one task, top-1 over its classes (methods.md Sec. 5.2) -------------

#: Photographs inside scikit-image's wheel by class folder: 6 images, 4 classes (nothing downloads).
PHOTOS = {
    "cat": ["chelsea.png"],
    "person": ["astronaut.png", "camera.png"],
    "cup": ["coffee.png"],
    "texture": ["brick.png", "grass.png"],
}
TEMPLATES = ["a photo of a {}.", "a picture of a {}."]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The photographs indexed as an imagefolder dataset, tiny-rn's attention-pool store on them and its
    zero-shot classifier over their classes (the stage of rule zero_shot_classifier)."""
    import shutil
    from pathlib import Path

    import skimage

    from clipmech.data import natural
    from clipmech.stages.zero_shot_classifier import zero_shot_classifier

    root = tmp_path_factory.mktemp("photos")
    for label, names in PHOTOS.items():
        (root / "tree" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(Path(skimage.__file__).parent / "data" / name, root / "tree" / label / name)
    natural.write_natural_dataset(root / "data", {"kind": "imagefolder", "root": str(root / "tree")})
    store = attnpool_extraction.extract_attnpool(RANDOM_RN, root / "data", root / "store.zarr", 4, "cpu", code="t")
    classifier = root / "classifier.npz"
    zero_shot_classifier(
        model=RANDOM_RN,
        dataset_dir=root / "data",
        classifier=classifier,
        zeroshot_params={"templates": TEMPLATES, "batch_size": 16},
        threads=1,
    )
    return str(root / "data"), str(store), str(classifier)


CLASSIFIER_SPEC = {"model": dataclasses.asdict(RANDOM_RN), "templates": TEMPLATES}


def test_ablate_components_scores_a_natural_dataset_over_its_classes(photos, tmp_path, written_tables, monkeypatch):
    """One task, class, on every labelled photograph; the unablated accuracy is the top-1 of the classifier rule's
    scoring (clipmech.models.zeroshot.accuracy of the stored outputs), the curves those of the in-memory ablation
    of all images at once for any chunk size; plot_ablation draws them over the labelled images."""
    from clipmech.data import datasets
    from clipmech.decomposition import pool
    from clipmech.models import zeroshot
    from clipmech.stages import plot_ablation as plot_stage
    from clipmech.stages.ablate_components import ablate_components

    dataset_dir, store, classifier = photos
    fractions = [0.0, 0.5, 1.0]
    written = {}
    for chunk in (2, 100):
        out = {"table": str(tmp_path / f"ablation{chunk}.tsv"), "tasks": str(tmp_path / f"tasks{chunk}.tsv")}
        ablate_components(
            store=store,
            dataset_dir=dataset_dir,
            out=out,
            ablation={"fractions": fractions},
            chunk_size=chunk,
            classifier=classifier,
            classifier_spec=CLASSIFIER_SPEC,
        )
        written[chunk] = written_tables[out["table"]], written_tables[out["tasks"]]
    pd.testing.assert_frame_equal(written[2][0], written[100][0])
    table, tasks = written[2]
    assert tasks.to_dict("list") == {"task": ["class"], "n_classes": [len(PHOTOS)], "n_images": [6]}
    assert set(table["task"]) == {"class"} and len(table) == 4 * len(fractions)

    ds = pool_store.open_store(store)
    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, 100)
    data = datasets.load(dataset_dir)
    weights_EK = zeroshot.load_dataset_classifier(classifier, RANDOM_RN, data, TEMPLATES)
    top1 = zeroshot.accuracy(y_NE, weights_EK, np.array(data.manifest["label"]), topk=(1,))["top1"]
    np.testing.assert_allclose(table["model_accuracy"], top1, rtol=1e-6)  # top1 is a float32 mean
    task = components.class_task(data, weights_EK.numpy())
    scores = components.component_scores(s_NHC, parts.u_HCE)
    for level in components.LEVELS:
        for fraction in fractions:
            keep = pool.top_fraction_mask(scores[level], fraction)
            y_ablated = pool.mean_ablate(s_NHC, parts.u_HCE, parts.bias_E, keep, level=level, s_mean_HC=s_NHC.mean(0))
            row = table[(table["level"] == level) & (table["fraction"] == fraction)]
            assert row["accuracy"].item() == components.zero_shot_accuracy(y_ablated, task), (level, fraction)

    for name, frame in (("table", table), ("tasks", tasks)):
        frame.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    titles = []
    monkeypatch.setattr(
        plot_stage.ablation_figures, "ablation_curves", lambda t, chance, title, path: titles.append(title)
    )
    plot_stage.plot_ablation(
        table=str(tmp_path / "table.tsv"), tasks=str(tmp_path / "tasks.tsv"), out={"figure": "unused"}, label="t"
    )
    assert titles == ["t: mean-ablation of all but the top components (6 labelled images)"]


def test_decompose_text_scores_a_natural_dataset_over_its_classes(photos, tmp_path, written_tables):
    """The sparse-direction accuracy and the class pairs of the class task: the model's accuracy is the
    unablated top-1, every class has its pairs; plot_sparse_accuracy draws the table."""
    from clipmech.data import datasets
    from clipmech.models import zeroshot
    from clipmech.stages.decompose_text import decompose_text
    from clipmech.stages.plot_sparse_accuracy import plot_sparse_accuracy

    dataset_dir, store, classifier = photos
    ds = pool_store.open_store(store)
    words = np.array([f"w{i}" for i in range(12)])
    text = tmp_path / "embeddings.npz"
    rng = np.random.default_rng(1)
    artefacts.save_npz(
        text, rule="embed_text", words=words, word_embeddings=rng.standard_normal((12, ds.sizes["embed"]))
    )
    out = {name: str(tmp_path / f"{name}.tsv") for name in ("words", "class_pairs", "accuracy")}
    params = {"n_components": 4, "m_values": [1, 4], "keep_fraction": 0.2, "n_class_pairs": 2}
    decompose_text(
        store=store,
        dataset_dir=dataset_dir,
        text_path=str(text),
        out=out,
        text=params | {"n_words_shown": 3, "omp_batch_size": 16},
        pc_top_k=5,
        chunk_size=4,
        device="cpu",
        threads=1,
        classifier=classifier,
        classifier_spec=CLASSIFIER_SPEC,
    )
    accuracy, class_pairs = written_tables[out["accuracy"]], written_tables[out["class_pairs"]]
    assert set(accuracy["task"]) == set(class_pairs["task"]) == {"class"}
    assert len(accuracy) == 1 + 2 * (1 + len(params["m_values"]))  # the model; pairs and neurons: exact, each m
    data = datasets.load(dataset_dir)
    _, y_NE = pool_store.pair_scalars(ds, 100)
    weights_EK = zeroshot.load_dataset_classifier(classifier, RANDOM_RN, data, TEMPLATES)
    top1 = zeroshot.accuracy(y_NE, weights_EK, np.array(data.manifest["label"]), topk=(1,))["top1"]
    assert accuracy.loc[accuracy["level"] == "model", "accuracy"].item() == pytest.approx(top1, rel=1e-6)
    assert sorted(set(class_pairs["class"])) == sorted(PHOTOS)
    assert class_pairs.groupby("class").size().eq(params["n_class_pairs"]).all()
    accuracy.to_csv(tmp_path / "sparse_accuracy.tsv", sep="\t", index=False)
    figure = tmp_path / "sparse_accuracy.png"
    plot_sparse_accuracy(
        accuracy=str(tmp_path / "sparse_accuracy.tsv"),
        text_path=str(text),
        out={"figure": str(figure)},
        keep_fraction=0.2,
        label="t",
    )
    assert _is_png(figure)


def test_the_decomposition_refuses_a_classifier_built_from_other_templates(photos, tmp_path):
    from clipmech.stages.ablate_components import ablate_components

    dataset_dir, store, classifier = photos
    with pytest.raises(ValueError, match="differing: n_templates, templates_sha256"):
        ablate_components(
            store=store,
            dataset_dir=dataset_dir,
            out={"table": str(tmp_path / "a.tsv"), "tasks": str(tmp_path / "t.tsv")},
            ablation={"fractions": [1.0]},
            chunk_size=4,
            classifier=classifier,
            classifier_spec=CLASSIFIER_SPEC | {"templates": ["an image of a {}."]},
        )
    assert not list(tmp_path.iterdir())
