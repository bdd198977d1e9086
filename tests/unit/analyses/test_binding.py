"""Unit tests of clipmech.analyses.binding: prompt builders, accuracy aggregation, Grad-CAM prompts and
the figure's example selection."""

import numpy as np
import pandas as pd
import pytest

from clipmech.analyses.binding import (
    TASKS,
    accuracy_by_count,
    binding_trials,
    describe,
    gradcam_prompts,
    object_phrase,
    select_examples,
    swappable_pairs,
    task_prompts,
)
from clipmech.data import shapes

RED_SQUARE = {"colour": "red", "shape": "square", "position": "top-left"}
BLUE_CIRCLE = {"colour": "blue", "shape": "circle", "position": "center"}
GREEN_TRIANGLE = {"colour": "green", "shape": "triangle", "position": "bottom-right"}


def _bag(prompt):
    """The set of object phrases of a prompt (the meaning up to object order)."""
    return sorted(prompt.split(" and "))


def test_phrases_follow_the_training_caption_grammar():
    assert describe([RED_SQUARE, BLUE_CIRCLE]) == shapes.caption([RED_SQUARE, BLUE_CIRCLE])
    assert describe([RED_SQUARE, BLUE_CIRCLE]) == "a red square at the top left and a blue circle in the center"
    assert describe([RED_SQUARE, BLUE_CIRCLE], ("colour", "shape")) == "a red square and a blue circle"
    assert object_phrase(RED_SQUARE, ("colour",)) == "a red shape"
    assert object_phrase(RED_SQUARE, ("position",)) == "a shape at the top left"
    # the partial phrases are ones the training captions produce when attributes are dropped
    rng = np.random.default_rng(0)
    seen = {shapes.caption([RED_SQUARE], rng, p_drop=0.5) for _ in range(200)}
    assert {"a red square", "a red shape", "a square", "a shape at the top left"} <= seen
    with pytest.raises(ValueError, match="size"):
        object_phrase(RED_SQUARE, ("colour", "size"))


def test_swap_prompts_two_objects():
    rng = np.random.default_rng(0)
    scene = [RED_SQUARE, BLUE_CIRCLE]
    colour = task_prompts(scene, "colour_swap", rng)
    assert colour == {
        "correct": "a red square and a blue circle",
        "foil": "a blue square and a red circle",
        "objects": (0, 1),
    }
    shape = task_prompts(scene, "shape_swap", rng)
    assert shape["foil"] == "a red circle at the top left and a blue square in the center"
    position = task_prompts(scene, "position_swap", rng)
    assert position["foil"] == "a red square in the center and a blue circle at the top left"
    # every swap foil names exactly the image's features: only their binding differs
    for prompts in (colour, shape, position):
        words = lambda p: sorted(p.replace(" and ", " ").split())  # noqa: E731
        assert words(prompts["foil"]) == words(prompts["correct"])
        assert _bag(prompts["foil"]) != _bag(prompts["correct"])


def test_swaps_that_change_nothing_are_not_offered():
    red_circle = {"colour": "red", "shape": "circle", "position": "center"}
    same_colour = [RED_SQUARE, red_circle]
    assert swappable_pairs(same_colour, "colour", TASKS["colour_swap"].described) == []
    assert task_prompts(same_colour, "colour_swap", np.random.default_rng(0)) is None
    # exchanging the colours of two squares is a no-op once positions are not described...
    blue_square = {"colour": "blue", "shape": "square", "position": "center"}
    assert swappable_pairs([RED_SQUARE, blue_square], "colour", ("colour", "shape")) == []
    # ...but not when they are
    assert swappable_pairs([RED_SQUARE, blue_square], "colour", ("colour", "shape", "position")) == [(0, 1)]
    with pytest.raises(ValueError, match="at least 2 objects"):
        task_prompts([RED_SQUARE], "colour_swap", np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid tasks are: colour_swap"):
        task_prompts(same_colour, "size_swap", np.random.default_rng(0))


def test_absent_foils_name_a_missing_value_and_change_one_object():
    scene = [RED_SQUARE, BLUE_CIRCLE, GREEN_TRIANGLE]
    rng = np.random.default_rng(1)
    for _ in range(20):
        colour = task_prompts(scene, "absent_colour", rng)
        (i,) = colour["objects"]
        foil = colour["foil"].split(" and ")
        correct = colour["correct"].split(" and ")
        assert [k for k in range(3) if foil[k] != correct[k]] == [i]
        new_colour = foil[i].split()[1]
        assert new_colour in shapes.COLOURS and new_colour not in {"red", "blue", "green"}
        assert foil[i].split()[2] == scene[i]["shape"]
        shape = task_prompts(scene, "absent_shape", rng)
        (j,) = shape["objects"]
        assert shape["foil"].split(" and ")[j].split()[2] in {"pentagon", "hexagon"}
    all_shapes = [
        {"colour": c, "shape": s, "position": p} for c, s, p in zip(shapes.COLOURS, shapes.SHAPES, shapes.POSITIONS)
    ]
    assert task_prompts(all_shapes, "absent_shape", rng) is None
    assert task_prompts(all_shapes, "absent_colour", rng)["foil"].count("yellow") == 1


def _all_trials(objects, tasks, seed, n_images, chunk_size):
    """The trials of every chunk, concatenated, and the (start, stop) of the chunks."""
    chunks = list(binding_trials(objects, tasks, np.random.default_rng(seed), n_images, chunk_size))
    bounds = [(start, stop) for start, stop, _ in chunks]
    return pd.concat([trials for *_, trials in chunks], ignore_index=True), bounds


def test_binding_trials_on_a_dataset(tiny_dataset):
    objects = pd.read_csv(tiny_dataset / "objects.tsv", sep="\t")
    n_images = objects["image_id"].nunique()
    tasks = list(TASKS)
    trials, bounds = _all_trials(objects, tasks, 0, n_images, n_images)
    assert bounds == [(0, n_images)]
    multi = objects.loc[objects["n_objects"] >= 2, "image_id"].unique()
    assert set(trials["image_id"]) == set(multi)
    assert trials["n_objects"].min() == 2
    # distinct attributes: every swap and absent colour exists; no absent shape with 5 objects
    counts = trials.groupby("task").size()
    assert all(counts[t] == len(multi) for t in tasks if t != "absent_shape")
    assert counts["absent_shape"] == np.sum(objects.groupby("image_id")["n_objects"].first().between(2, 4))
    assert (trials["correct"] != trials["foil"]).all()
    again, _ = _all_trials(objects, tasks, 0, n_images, n_images)
    pd.testing.assert_frame_equal(trials, again)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown binding tasks"):
        binding_trials(objects, ["colour_swap", "bogus"], rng, n_images, 4)
    with pytest.raises(ValueError, match="at least 2 objects"):
        binding_trials(objects[objects["n_objects"] == 1], tasks, rng, n_images, 4)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        binding_trials(objects, tasks, rng, n_images, 0)
    with pytest.raises(ValueError, match=f"expected 0 to {n_images - 2}"):
        binding_trials(objects, tasks, rng, n_images - 1, 4)


def test_binding_trials_chunked_equal_one_pass():
    """Chunks of 3 images (not a divisor of the 11 images) draw the same foils as one pass: the rng's draws
    go images in ascending id whatever the chunking; a chunk of 1-object images only has no rows."""
    rng = np.random.default_rng(7)
    rows = []
    for image_id, n_objects in enumerate([2, 1, 3, 1, 1, 1, 4, 2, 5, 3, 2]):
        for object_id in range(1, n_objects + 1):
            rows.append(
                {
                    "image_id": image_id,
                    "object_id": object_id,
                    "n_objects": n_objects,
                    "shape": shapes.SHAPES[rng.integers(len(shapes.SHAPES))],
                    "colour": shapes.COLOURS[rng.integers(len(shapes.COLOURS))],
                    "position": list(shapes.POSITION_PHRASES)[rng.integers(len(shapes.POSITION_PHRASES))],
                }
            )
    objects = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # any row order
    tasks = list(TASKS)
    whole, _ = _all_trials(objects, tasks, 5, 11, 11)
    chunked, bounds = _all_trials(objects, tasks, 5, 11, 3)
    assert bounds == [(0, 3), (3, 6), (6, 9), (9, 11)]
    pd.testing.assert_frame_equal(chunked, whole)
    assert set(whole["image_id"]) == {0, 2, 6, 7, 8, 9, 10} and len(whole) > 20
    empty = list(binding_trials(objects, tasks, np.random.default_rng(5), 11, 3))[1][2]
    assert empty.empty and list(empty.columns) == ["image_id", "n_objects", "task", "correct", "foil"]
    assert empty.dtypes.equals(whole.dtypes)
    other, _ = _all_trials(objects, tasks, 6, 11, 3)
    assert not other.equals(whole)  # the seed draws the foils


def test_accuracy_by_count_hand_computed():
    trials = pd.DataFrame(
        {
            "task": ["colour_swap"] * 6 + ["absent_colour"] * 3,
            "n_objects": [2, 2, 2, 2, 3, 3, 2, 3, 3],
            "preferred": [True, True, True, False, False, False, True, True, False],
        }
    )
    table = accuracy_by_count(trials)
    assert list(zip(table["task"], table["n_objects"].astype(str))) == [
        ("colour_swap", "2"), ("colour_swap", "3"), ("colour_swap", "all"),
        ("absent_colour", "2"), ("absent_colour", "3"), ("absent_colour", "all"),
    ]  # fmt: skip
    rows = table.set_index(["task", table["n_objects"].astype(str)])
    assert rows.loc[("colour_swap", "2"), "accuracy"] == 0.75
    assert rows.loc[("colour_swap", "2"), ["n_images", "n_correct"]].tolist() == [4, 3]
    assert rows.loc[("colour_swap", "3"), "accuracy"] == 0.0
    assert rows.loc[("colour_swap", "all"), "accuracy"] == pytest.approx(0.5)
    assert rows.loc[("absent_colour", "3"), "accuracy"] == 0.5
    # Wilson interval of 3 of 4 at 95 %: hand-computed
    z = 1.959963984540054
    n, p = 4, 0.75
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert rows.loc[("colour_swap", "2"), "ci_low"] == pytest.approx(centre - half)
    assert rows.loc[("colour_swap", "2"), "ci_high"] == pytest.approx(centre + half)
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    assert rows.loc[("colour_swap", "3"), "ci_low"] == 0.0
    wider = accuracy_by_count(trials, confidence_level=0.99).set_index(["task", "n_objects"])
    assert wider.loc[("colour_swap", 2), "ci_low"] < rows.loc[("colour_swap", "2"), "ci_low"]
    with pytest.raises(ValueError, match="preferred"):
        accuracy_by_count(trials.drop(columns="preferred"))
    with pytest.raises(ValueError, match="no binding trials"):
        accuracy_by_count(trials.iloc[:0])


def test_gradcam_prompts():
    scene = [RED_SQUARE, BLUE_CIRCLE, GREEN_TRIANGLE]
    rng = np.random.default_rng(0)
    for _ in range(30):
        choice = gradcam_prompts(scene, rng)
        target, lure = scene[choice["target"] - 1], scene[choice["lure"] - 1]
        assert choice["target"] != choice["lure"]
        prompts = choice["prompts"]
        assert prompts["correct"] == f"a {target['colour']} {target['shape']}"
        assert prompts["swapped"] == f"a {lure['colour']} {target['shape']}"
        absent_colour = prompts["absent"].split()[1]
        assert absent_colour not in {"red", "blue", "green"} and prompts["absent"].endswith(target["shape"])
    # a swapped phrase must not describe another object: the blue square's swapped prompt with the
    # red circle as lure, "a red square", names the red square, so only (red circle, blue square)
    # is left ("a blue circle")
    blue_square = {"colour": "blue", "shape": "square", "position": "bottom-left"}
    red_circle = {"colour": "red", "shape": "circle", "position": "center"}
    scene = [RED_SQUARE, blue_square, red_circle]
    pairs = set()
    for _ in range(50):
        choice = gradcam_prompts(scene, rng)
        pairs.add((choice["target"], choice["lure"]))
        present = {f"a {o['colour']} {o['shape']}" for o in scene}
        assert choice["prompts"]["swapped"] not in present
    assert pairs == {(3, 2)}
    assert gradcam_prompts([RED_SQUARE, {**RED_SQUARE, "shape": "circle"}], rng) is None
    six = [{"colour": c, "shape": s} for c, s in zip(shapes.COLOURS, shapes.SHAPES + ("circle",))]
    assert gradcam_prompts(six, rng) is None  # no absent colour


def test_select_examples():
    margin = np.array([0.3, -0.2, 0.1, -0.5, 0.0, 0.2, np.nan])
    index, failed = select_examples(margin, 4)
    assert index.tolist() == [3, 1, 0, 5]  # worst failures, then clearest successes
    assert failed.tolist() == [True, True, False, False]
    index, failed = select_examples(margin, 5)
    assert index.tolist() == [3, 1, 4, 0, 5] and failed.tolist() == [True, True, True, False, False]
    # one kind short: the other fills the rows
    index, failed = select_examples(np.array([0.1, 0.4, -0.3, 0.2]), 3)
    assert index.tolist() == [2, 1, 3] and failed.tolist() == [True, False, False]
    index, failed = select_examples(np.array([0.1, 0.4]), 4)
    assert index.tolist() == [1, 0] and not failed.any()
    index, _ = select_examples(margin, 100)
    assert sorted(index.tolist()) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="n_rows"):
        select_examples(margin, 0)
