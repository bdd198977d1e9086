"""Foil captions: a caption with one object noun or attribute word swapped, seeded (methods.md Sec. 8.1).

Causal tracing on image-caption pairs (the causal-tracing paper's Secs. 3.1-3.2 run it on COCO and CC3M
pairs) scores each image against its caption and a *foil*, the caption with exactly one word of a configured
kind replaced by another word of that kind (the metric of Sec. 8.3; how the foil is made is ours, after
FOIL-COCO's one swapped noun, Shekhar et al. 2017). The words of a kind are a *vocabulary* of units, each a word or a phrase
(``traffic light`` is one unit): the dataset's concept nouns (:func:`clipmech.data.concepts.concept_matrix`:
COCO category names or a captions dataset's ``words``) for ``object``, a configured list for ``attribute``
(``patching.foil.attributes``; by default basic colour terms, :class:`clipmech.config.Foil`).

A unit is found in a caption as in :func:`clipmech.data.concepts.words_in_texts`: whole words, any case, any
run of whitespace between a phrase's words; where units overlap the longest wins ("hot dog" over "dog").
:func:`foil_caption` picks one occurrence and a replacement unit absent from the caption, both from a numpy
Generator; :func:`foil_captions` seeds one Generator per caption from (seed, caption position), so a caption's
foil does not depend on the captions around it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipmech.data.concepts import as_list, words_in_texts

#: The kinds of word a foil swaps.
FOIL_KINDS = ("object", "attribute")
#: The ``kind`` of the pair table's rows (:func:`caption_pairs`), beside the Shapes pair kinds.
CAPTION_PAIR_KIND = "caption"


@dataclass(frozen=True)
class Foil:
    """A caption and its foil.

    Attributes
    ----------
    caption, foil : str
        The foil is the caption with ``caption[start:end]`` replaced by ``replacement``.
    start, end : int
        Character offsets of the replaced unit in the caption.
    word : str
        The replaced unit as the vocabulary writes it.
    replacement : str
        The new unit as it stands in the foil (the replaced unit's case applied: :func:`match_case`).
    """

    caption: str
    foil: str
    start: int
    end: int
    word: str
    replacement: str


def vocabulary_units(words: Sequence[str]) -> tuple[str, ...]:
    """The distinct units of a word list, whitespace runs made one space, case-insensitively distinct (first
    spelling kept), in list order.

    Raises
    ------
    ValueError
        If fewer than 2 distinct units remain (a foil needs a replacement).
    """
    units: dict[str, str] = {}
    for word in words:
        unit = " ".join(str(word).split())
        if unit:
            units.setdefault(unit.lower(), unit)
    if len(units) < 2:
        raise ValueError(f"a foil vocabulary needs at least 2 distinct words or phrases, got {list(units.values())}")
    return tuple(units.values())


@functools.lru_cache(maxsize=16)
def _pattern(units: tuple[str, ...]) -> re.Pattern:
    """One alternation of every unit, longest first, as whole words and ignoring case."""
    ordered = sorted(units, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, unit.split())) for unit in ordered)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.I)


def occurrences(caption: str, units: Sequence[str]) -> list[tuple[int, int, str]]:
    """The non-overlapping occurrences of the units in a caption, left to right, the longest unit where
    several start at one place: (start, end, unit) with ``unit`` as the vocabulary writes it."""
    by_key = {unit.lower(): unit for unit in units}
    return [
        (match.start(), match.end(), by_key[" ".join(match.group().split()).lower()])
        for match in _pattern(tuple(units)).finditer(caption)
    ]


def match_case(word: str, like: str) -> str:
    """``word`` in the case of ``like``: all capitals when ``like`` is (and has more than one letter),
    capitalised when ``like`` starts with a capital, else as it is."""
    letters = [c for c in like if c.isalpha()]
    if len(letters) > 1 and like.isupper():
        return word.upper()
    if letters and like.lstrip()[0].isupper():
        return word[:1].upper() + word[1:]
    return word


def foil_caption(
    caption: str,
    units: Sequence[str],
    rng: np.random.Generator,
    n_tokens: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> Foil | None:
    """The foil of one caption: one occurrence of a unit (drawn uniformly) replaced by a unit absent from the
    caption (drawn uniformly; with ``n_tokens``, the first in a random order whose foil has as many tokens as
    the caption, so that both keep the same word positions, else the first in that order).

    Parameters
    ----------
    caption : str
    units : sequence of str
        The vocabulary (:func:`vocabulary_units`).
    rng : numpy.random.Generator
    n_tokens : callable, optional
        Texts -> int array, the number of word tokens of each under the model's tokenizer.

    Returns
    -------
    Foil or None
        None when the caption holds no unit, or every unit (no replacement left).
    """
    found = occurrences(caption, units)
    if not found:
        return None
    start, end, word = found[int(rng.integers(len(found)))]
    absent = [unit for unit, present in zip(units, words_in_texts([caption], units)[0], strict=True) if not present]
    if not absent:
        return None
    order = [absent[i] for i in rng.permutation(len(absent))]
    like = caption[start:end]
    foils = [caption[:start] + match_case(unit, like) + caption[end:] for unit in order]
    chosen = 0
    if n_tokens is not None:
        lengths = np.asarray(n_tokens([caption, *foils]))
        same = np.flatnonzero(lengths[1:] == lengths[0])
        chosen = int(same[0]) if same.size else 0
    return Foil(caption, foils[chosen], start, end, word, match_case(order[chosen], like))


def foil_captions(
    captions: Sequence[str],
    words: Sequence[str],
    *,
    seed: int,
    n_tokens: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> Iterator[tuple[int, Foil | None]]:
    """:func:`foil_caption` of each caption, in order, caption i drawing from ``numpy.random.default_rng([seed,
    i])``: an iterator of (i, its Foil or None), lazy, so that a caller may stop at the foils it needs.

    Raises
    ------
    ValueError
        As :func:`vocabulary_units`, for fewer than 2 distinct words (at the call).
    """
    units = vocabulary_units(words)
    return (
        (i, foil_caption(str(caption), units, np.random.default_rng([seed, i]), n_tokens))
        for i, caption in enumerate(captions)
    )


def caption_pairs(
    manifest: pd.DataFrame,
    words: Sequence[str],
    n_pairs: int,
    *,
    seed: int,
    n_tokens: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The pair table of causal tracing on image-caption pairs (methods.md Sec. 8.1): the first ``n_pairs``
    images, in manifest order, whose first caption has a foil (:func:`foil_captions`).

    Parameters
    ----------
    manifest : pandas.DataFrame
        A captions dataset's manifest (``index``, ``captions``: list of str per image).
    words : sequence of str
        The vocabulary of the foil's kind.
    n_pairs : int
        At least 1.
    seed : int
    n_tokens : callable, optional
        As in :func:`foil_caption`.

    Returns
    -------
    pairs : pandas.DataFrame
        One row per pair: ``pair_id`` (0..Q-1), ``kind`` (:data:`CAPTION_PAIR_KIND`), ``image`` (the manifest
        ``index``), ``clean`` and ``corrupt`` (both the row of the image in the pixels the caller reads for
        ``image``: 0..Q-1; an embedding corruption corrupts the clean input), ``caption``, ``foil``, ``word``
        and ``replacement``. Fewer than ``n_pairs`` rows when the manifest runs out.
    n_left_out : int
        The images before the last pair (all images, when fewer than ``n_pairs`` pairs are found) left out
        because their first caption has no word of the vocabulary, only such words, or no caption.

    Raises
    ------
    ValueError
        If ``n_pairs`` < 1, the manifest lacks ``index`` or ``captions``, or the vocabulary has fewer than 2
        distinct words.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be at least 1, got {n_pairs}")
    missing = [column for column in ("index", "captions") if column not in manifest.columns]
    if missing:
        raise ValueError(f"the manifest lacks {missing} (it has: {', '.join(map(str, manifest.columns))})")
    firsts = [next(iter(as_list(cell)), "") for cell in manifest["captions"]]
    rows, scanned = [], 0
    for i, foil in foil_captions(firsts, words, seed=seed, n_tokens=n_tokens):
        scanned = i + 1
        if foil is None:
            continue
        q = len(rows)
        rows.append(
            {
                "pair_id": q,
                "kind": CAPTION_PAIR_KIND,
                "image": int(manifest["index"].iloc[i]),
                "clean": q,
                "corrupt": q,
                "caption": foil.caption,
                "foil": foil.foil,
                "word": foil.word,
                "replacement": foil.replacement,
            }
        )
        if len(rows) == n_pairs:
            break
    columns = ["pair_id", "kind", "image", "clean", "corrupt", "caption", "foil", "word", "replacement"]
    return pd.DataFrame(rows, columns=columns), scanned - len(rows)
