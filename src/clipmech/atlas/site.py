"""Writing an atlas site (methods.md Sec. 10): thumbnails, unit pages, index, assets and manifest, atomically.

Layout of ``<site>/``::

    index.html                      every unit, sortable and filterable
    atlas.js, atlas.css             the only script and stylesheet (copied from ``assets/``)
    images/<i>.png                  one thumbnail per dataset image that some page shows (a photograph of a
                                    natural-image dataset as the model sees it: :class:`PhotoThumbnails`)
    units/<kind>/<key>.html         one page per unit with a page (:func:`clipmech.atlas.render.unit_href`)
    manifest.json                   units, pages and dead units per kind, and every file with its size and sha256

The site is written into ``<site>.partial`` next to it and renamed into place when complete, so a
site that exists is whole; a leftover partial directory of a killed job is removed on the next write.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipmech.artefacts import file_sha256
from clipmech.atlas import render
from clipmech.data import loader
from clipmech.data.loader import model_view

ASSETS = Path(__file__).parent / "assets"
ASSET_FILES = ("atlas.js", "atlas.css")


def thumbnail(image_HW3: np.ndarray, size: int) -> Image.Image:
    """An RGB image resized to ``size`` x ``size`` pixels (bilinear; shapes images are square)."""
    picture = Image.fromarray(np.ascontiguousarray(image_HW3, dtype=np.uint8), mode="RGB")
    return picture if picture.size == (size, size) else picture.resize((size, size), Image.Resampling.BILINEAR)


class PhotoThumbnails:
    """The thumbnails of a natural-image dataset (:class:`clipmech.data.datasets.ImageDataset` with a manifest):
    each image read through its manifest (a file or a tar member), decoded by :func:`clipmech.data.loader.open_rgb`
    as the model's pipeline decodes it, and cropped by :func:`model_view`."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.n_images = int(dataset.n_images)

    def thumbnails(self, indices: list[int], size: int):
        """(image index, thumbnail) for each of ``indices``, in their order."""
        manifest = self.dataset.manifest.iloc[list(indices)]  # one row per image, in index order
        if manifest["index"].tolist() != list(indices):
            raise ValueError("the manifest's rows are not in index order")
        images = loader.ManifestImages(manifest, self.dataset.root, lambda picture: model_view(picture, size))
        try:
            for item in range(len(images)):
                yield images[item]
        finally:
            images.close()


class ArrayThumbnails:
    """The thumbnails of a dataset held as one uint8 (N, H, W, 3) array (Shapes): :func:`thumbnail`."""

    def __init__(self, images_NHW3: np.ndarray) -> None:
        self.images_NHW3 = images_NHW3
        self.n_images = int(images_NHW3.shape[0])

    def thumbnails(self, indices: list[int], size: int):
        for i in indices:
            yield i, thumbnail(self.images_NHW3[i], size)


def write_site(
    site: str | Path,
    *,
    model: str,
    units: list[render.UnitPage],
    images_NHW3: np.ndarray | PhotoThumbnails,
    dataset: str,
    thumbnail_size: int,
    facts: list[tuple[str, str]],
) -> dict:
    """Write the site of one model at ``site`` (module docstring), replacing any earlier one.

    Parameters
    ----------
    site : str or Path
        The site directory.
    model : str
    units : list of clipmech.atlas.render.UnitPage
        Every unit, in index order; those with ``page`` get a page.
    images_NHW3 : numpy.ndarray, uint8, (N, H, W, 3), or PhotoThumbnails
        The dataset's images (only those shown on a page are read): an array (Shapes), or the photographs of
        a natural-image dataset, read through its manifest.
    dataset : str
        The dataset and split of those images, as the pages name it (e.g. ``shapes: all 500 images``).
    thumbnail_size : int
        Thumbnail side in pixels.
    facts : list of (str, str)
        Key facts shown above the index.

    Returns
    -------
    dict
        The manifest (also written as ``manifest.json``).

    Raises
    ------
    ValueError
        If two units share an address, or a page shows an image outside 0..N-1.
    """
    site = Path(site)
    addresses = Counter(u.href for u in units)
    repeated = sorted(a for a, n in addresses.items() if n > 1)
    if repeated:
        raise ValueError(f"units share addresses: {', '.join(repeated[:5])}")
    images = images_NHW3 if isinstance(images_NHW3, PhotoThumbnails) else ArrayThumbnails(images_NHW3)
    shown = sorted({int(i) for u in units if u.page for i in u.images_K})
    if shown and (shown[0] < 0 or shown[-1] >= images.n_images):
        raise ValueError(f"pages show images outside 0..{images.n_images - 1} of the dataset")
    partial = site.with_name(site.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "images").mkdir(parents=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, partial / name)
    for i, picture in images.thumbnails(shown, thumbnail_size):
        picture.save(partial / "images" / f"{i}.png", format="PNG")
    for unit in units:
        if unit.page:
            path = partial / unit.href
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render.unit_page_html(unit, model, dataset), encoding="utf-8")
    (partial / "index.html").write_text(render.index_html(units, model, facts), encoding="utf-8")
    files = sorted(p for p in partial.rglob("*") if p.is_file())
    manifest = {
        "model": model,
        "units": dict(sorted(Counter(u.kind for u in units).items())),
        "pages": dict(sorted(Counter(u.kind for u in units if u.page).items())),
        "dead": dict(sorted(Counter(u.kind for u in units if u.dead).items())),
        "files": {
            p.relative_to(partial).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if site.exists():
        shutil.rmtree(site)
    partial.rename(site)
    return manifest


def summary_table(manifest: dict, site: str | Path) -> pd.DataFrame:
    """One row per unit kind of a written site's manifest: ``kind``, ``units``, ``pages``, ``dead`` (units with
    the same activation on every image), and on every row the site's ``files`` (manifest.json included),
    ``megabytes`` (rounded to 3 decimals) and ``index`` (the path of its index.html)."""
    size = sum(f["bytes"] for f in manifest["files"].values())
    return pd.DataFrame(
        {
            "kind": list(manifest["units"]),
            "units": list(manifest["units"].values()),
            "pages": [manifest["pages"].get(kind, 0) for kind in manifest["units"]],
            "dead": [manifest["dead"].get(kind, 0) for kind in manifest["units"]],
            "files": len(manifest["files"]) + 1,
            "megabytes": round(size / 1e6, 3),
            "index": f"{site}/index.html",
        }
    )
