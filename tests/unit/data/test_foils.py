"""Foil captions (methods.md Sec. 8.1): one word of the configured kind swapped for another of that kind absent
from the caption, seeded; captions without such a word left out; phrases as one unit; case kept."""

import re

import numpy as np
import pandas as pd
import pytest

from clipmech.data import foils
from clipmech.data.concepts import words_in_texts

OBJECTS = ["dog", "cat", "car", "hot dog", "traffic light", "person"]
COLOURS = ["red", "blue", "green", "white", "black"]
CAPTIONS = [
    "A dog sits next to a red car.",
    "two cats on a white sofa",
    "The traffic light turned green near a hot dog stand",
    "nothing to see here",
    "A Person with a blue umbrella and a dog",
    "DOG AND CAT",
    "a caption with a dogma and a carpet",
]


def units_in(text: str, units) -> set[str]:
    return {unit for unit, present in zip(units, words_in_texts([text], units)[0], strict=True) if present}


def swapped(caption: str, foil: foils.Foil) -> tuple[str, str, str]:
    """(prefix, old span, new span): what the foil changed, from the common prefix and suffix of the two."""
    assert foil.caption == caption
    prefix, suffix = caption[: foil.start], caption[foil.end :]
    assert foil.foil.startswith(prefix) and foil.foil.endswith(suffix)
    return prefix, caption[foil.start : foil.end], foil.foil[len(prefix) : len(foil.foil) - len(suffix)]


@pytest.mark.parametrize("words", [OBJECTS, COLOURS])
def test_a_foil_swaps_one_unit_of_the_kind_for_one_absent_from_the_caption(words):
    made = dict(foils.foil_captions(CAPTIONS, words, seed=0))
    assert made  # some captions have a foil
    for i, foil in made.items():
        if foil is None:
            continue
        _, old, new = swapped(CAPTIONS[i], foil)
        assert " ".join(old.split()).lower() == foil.word.lower() and foil.word in words  # a unit of the kind
        assert new == foil.replacement and new.lower() in {w.lower() for w in words}  # the new unit, of the kind
        assert new.lower() not in {u.lower() for u in units_in(CAPTIONS[i], words)}  # absent from the caption
        # Exactly one unit differs: the foil holds the new unit, and the caption's others (the old one only
        # if it occurs again).
        rest = units_in(foil.foil, words) - {new.lower()}
        assert rest <= units_in(CAPTIONS[i], words)
        assert foil.foil.split() != CAPTIONS[i].split()


def test_captions_without_a_word_of_the_kind_are_dropped():
    made = dict(foils.foil_captions(CAPTIONS, OBJECTS, seed=0))
    assert made[3] is None  # no word of the kind at all
    assert made[6] is None  # "dogma" and "carpet" are not whole words "dog" and "car"
    assert dict(foils.foil_captions(["a dog and a cat"], ["dog", "cat"], seed=0))[0] is None  # no unit left to use
    assert made[1] is None  # "cats": whole words only, no plural
    colour = dict(foils.foil_captions(CAPTIONS, COLOURS, seed=0))
    assert [i for i, foil in colour.items() if foil is None] == [3, 5, 6]


def test_same_seed_same_foils_and_seeds_differ():
    captions = [f"a dog next to a car number {i}" for i in range(30)]
    first = [foil.foil for _, foil in foils.foil_captions(captions, OBJECTS, seed=7)]
    assert first == [foil.foil for _, foil in foils.foil_captions(captions, OBJECTS, seed=7)]
    other = [foil.foil for _, foil in foils.foil_captions(captions, OBJECTS, seed=8)]
    assert first != other
    # A caption's foil depends on its position and the seed, not on the captions before it.
    assert [f.foil for _, f in foils.foil_captions(captions[:10], OBJECTS, seed=7)] == first[:10]


def test_a_phrase_is_one_unit_and_the_longest_wins():
    units = foils.vocabulary_units(OBJECTS)
    found = foils.occurrences("the traffic   light and a hot dog", units)
    assert [(unit, start, end) for start, end, unit in found] == [("traffic light", 4, 19), ("hot dog", 26, 33)]
    seen = set()
    for seed in range(40):
        (_, foil), *_ = foils.foil_captions(["a hot dog on a plate"], OBJECTS, seed=seed)
        seen.add(foil.word)
        assert foil.foil.startswith("a ") and foil.foil.endswith(" on a plate")
        assert "hot" not in foil.foil  # never "a hot cat": the phrase is swapped whole
    assert seen == {"hot dog"}


@pytest.mark.parametrize(
    ("caption", "pattern"),
    [("Dog on grass", r"^[A-Z][a-z]+( [a-z]+)? on grass$"), ("DOG ON GRASS", r"^[A-Z]+( [A-Z]+)? ON GRASS$")],
)
def test_the_case_of_the_swapped_word_is_kept(caption, pattern):
    for seed in range(10):
        (_, foil), *_ = foils.foil_captions([caption], OBJECTS, seed=seed)
        assert re.match(pattern, foil.foil), foil.foil
    assert foils.match_case("traffic light", "Dog") == "Traffic light"
    assert foils.match_case("cat", "dog") == "cat"


def test_the_token_count_picks_a_replacement_of_the_same_length():
    def n_tokens(texts):  # one token per character of the words: only a 3-letter unit keeps the length
        return np.array([len(text.replace(" ", "")) for text in texts])

    for seed in range(20):
        (_, foil), *_ = foils.foil_captions(["a dog runs"], OBJECTS, seed=seed, n_tokens=n_tokens)
        assert foil.replacement in ("cat", "car")
    (_, foil), *_ = foils.foil_captions(["a person runs"], OBJECTS, seed=0, n_tokens=n_tokens)
    assert foil is not None  # no unit of 6 letters: the first in the random order stands


def test_a_vocabulary_needs_two_distinct_units():
    assert foils.vocabulary_units(["Dog", "dog", " hot  dog "]) == ("Dog", "hot dog")
    with pytest.raises(ValueError, match="at least 2 distinct"):
        foils.foil_captions(["a dog"], ["dog", "DOG", " "], seed=0)


def test_caption_pairs_take_the_first_foilable_images_first_captions():
    manifest = pd.DataFrame(
        {
            "index": np.arange(6),
            "captions": [["a dog on a mat", "a cat"], [], ["no noun here"], ["a car at a traffic light"],
                         ["Cat and car"], ["a person"]],
        }
    )  # fmt: skip
    pairs, left_out = foils.caption_pairs(manifest, OBJECTS, 2, seed=3)
    assert pairs["image"].tolist() == [0, 3] and left_out == 2  # images 1 (no caption) and 2 (no noun)
    assert pairs["pair_id"].tolist() == pairs["clean"].tolist() == pairs["corrupt"].tolist() == [0, 1]
    assert (pairs["kind"] == foils.CAPTION_PAIR_KIND).all()
    assert pairs["caption"].tolist() == ["a dog on a mat", "a car at a traffic light"]  # the first captions
    every, left_out = foils.caption_pairs(manifest, OBJECTS, 10, seed=3)
    assert every["image"].tolist() == [0, 3, 4, 5] and left_out == 2  # the manifest ran out
    assert every.head(2).equals(pairs)
    with pytest.raises(ValueError, match="n_pairs must be at least 1"):
        foils.caption_pairs(manifest, OBJECTS, 0, seed=3)
    with pytest.raises(ValueError, match=r"lacks \['captions'\]"):
        foils.caption_pairs(manifest.drop(columns="captions"), OBJECTS, 1, seed=3)
