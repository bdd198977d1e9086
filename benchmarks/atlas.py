"""The neuron atlas at paper scale (issue 23): build time, peak RSS, size, and the index in Chromium.

Real activations of a random-weight model: a Shapes set is drawn (``--images``, 224 px), the model
(default open_clip ``ViT-L-14``, ``pretrained=None``) is run over it through the pipeline's extraction
(:func:`clipmech.stores.activation_extraction.extract`) at the MLP outputs of ``--sites`` blocks (ViT-L/14:
24 x 1,024 = 24,576 units), Algorithm 1 as ``neuron_selectivity`` computes it, and a top-k SAE of
``--latents`` latents is trained on the last block's MLP output (:func:`clipmech.sae.train.train_sae`,
``--sae-tokens`` tokens). Then ``build_atlas`` runs in a child process (its wall time; its peak RSS, the
child's ``VmHWM``, and that before the build: the imports), with the config's atlas defaults. Printed: the
build, the site's files and size, the index's size and units, and in headless Debian Chromium (Playwright,
as the workflow tests drive it) the index's load, a sort by entropy, a layer filter and a search, each the
median of ``--repeats`` page loads. The data are kept (``--keep``): a rerun extracts nothing again.

``--synthetic-rows`` times indexes of that many made-up MLP rows (no site; as
``tests/workflow/test_atlas_browser.py`` builds one) the same way, e.g. 24,576 and ~90k.

    python benchmarks/atlas.py --images 40 --latents 4096 --synthetic-rows 24576 92160 --keep /tmp/atlas-bench
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from clipmech.atlas import render
from clipmech.atlas.site import ASSET_FILES, ASSETS
from clipmech.config import Atlas, Selectivity
from clipmech.data import shapes
from clipmech.models.loading import ModelSpec
from clipmech.sae.train import SAETrainConfig, train_sae
from clipmech.stages.build_atlas import build_atlas
from clipmech.stages.neuron_selectivity import neuron_selectivity
from clipmech.stores import activations
from clipmech.stores.activation_extraction import extract

CHROMIUM = "/usr/bin/chromium"
MIB = 1024 * 1024


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-L-14", help="open_clip architecture, random weights")
    parser.add_argument("--images", type=int, default=40, help="Shapes images (a multiple of 5)")
    parser.add_argument("--sites", type=int, default=None, help="first blocks whose MLP outputs are units (all)")
    parser.add_argument("--latents", type=int, default=4096, help="SAE latents (0: no SAE)")
    parser.add_argument("--sae-tokens", type=int, default=16384, help="SAE training tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="page loads per browser timing")
    parser.add_argument("--synthetic-rows", type=int, nargs="*", default=[], help="made-up index sizes to time")
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it (default: a temp dir)")
    parser.add_argument("--skip-build", action="store_true", help="time the browser only (synthetic rows)")
    return parser.parse_args()


def _peak_mib() -> float:
    """This process's peak RSS (``VmHWM``) in MiB: of its own memory since it started (``ru_maxrss`` would
    count the parent's at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(queue, kwargs: dict) -> None:
    imported = _peak_mib()
    start = time.perf_counter()
    manifest = build_atlas(**kwargs)
    seconds = time.perf_counter() - start
    queue.put((seconds, imported, _peak_mib(), manifest))


def timed_build(kwargs: dict) -> tuple[float, float, float, dict]:
    """``build_atlas(**kwargs)`` in a spawned child: (wall seconds, the child's peak RSS in MiB before the
    build, with its imports, and after it, manifest)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, kwargs))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"build_atlas failed in its child (exit code {process.exitcode})")
    return result


def make_run(work: Path, args: argparse.Namespace) -> dict:
    """Dataset, store, selectivity table and SAE of the run; the keyword arguments of ``build_atlas``."""
    data, store, selectivity_dir = work / "shapes", work / "store.zarr", work / "selectivity"
    atlas = {key: value for key, value in asdict(Atlas()).items() if key not in ("models", "dataset", "k")}
    select = Selectivity()
    k = min(select.k, args.images)  # Algorithm 1's k, at most the images
    atlas |= {"k": k, "reduction": select.reduction}
    if not data.exists():
        start = time.perf_counter()
        shapes.build(data, shapes.ShapesSpec(n_per_count=args.images // 5, image_size=224, seed=0))
        print(f"Shapes: {args.images} images at 224 px in {time.perf_counter() - start:.1f} s")
    layers = None if args.sites is None else list(range(args.sites))
    if not store.exists():
        torch.manual_seed(0)
        start = time.perf_counter()
        extract(
            ModelSpec(name=f"{args.model}-random", architecture=args.model, pretrained=None),
            data,
            store,
            layers=layers,
            reductions=(select.reduction,),
            batch_size=args.batch_size,
            device="cpu",
            code="benchmarks/atlas.py",
        )
        print(f"extraction: {time.perf_counter() - start:.1f} s, store {_size(store) / MIB:.0f} MiB")
    if not (selectivity_dir / "units.tsv").exists():
        selectivity_dir.mkdir(exist_ok=True)
        start = time.perf_counter()
        neuron_selectivity(
            store=str(store),
            dataset_dir=str(data),
            units=str(selectivity_dir / "units.tsv"),
            topk=str(selectivity_dir / "topk.tsv"),
            null=str(selectivity_dir / "null.npy"),
            selectivity={"reduction": select.reduction, "k": k, "n_null": select.n_null},
            seed=0,
        )
        print(f"selectivity: {time.perf_counter() - start:.1f} s")
    inputs = {"data": str(data), "store": str(store), "units": str(selectivity_dir / "units.tsv")}
    sae_sites = []
    if args.latents:
        n_layers = activations.open_store(store).sizes["layer"]
        site = f"visual.blocks.{n_layers - 1}.hook_mlp_out"
        sae_path = work / "sae.pt"
        if not sae_path.exists():
            defaults = {f.name: f.default for f in fields(SAETrainConfig)}
            cfg = SAETrainConfig(
                n_latents=args.latents,
                n_tokens=args.sae_tokens,
                batch_size=min(defaults["batch_size"], args.sae_tokens),
                buffer_tokens=min(defaults["buffer_tokens"], args.sae_tokens),
            )
            start = time.perf_counter()
            meta = train_sae(store, site, cfg, sae_path, work / "sae-log.tsv")
            print(
                f"SAE: {args.latents} latents at {site}, {meta['steps']} steps in {time.perf_counter() - start:.1f} s"
            )
        inputs["sae_checkpoints"] = [str(sae_path)]
        sae_sites = [site]
    return {
        "model": f"{args.model} (random weights)",
        "dataset": "shapes",
        "inputs": inputs,
        "site": str(work / "atlas"),
        "summary": str(work / "atlas.tsv"),
        "atlas": atlas,
        "sources": {"sae": "shapes", "patching": None, "miclip": "shapes"},
        "sae_sites": sae_sites,
        "miclip_units": [],
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def synthetic_units(n_rows: int) -> list[render.UnitPage]:
    """``n_rows`` made-up MLP units of 1,024 per layer (keys ``layer-neuron``), seeded, none with a page; the
    browser test's paper-scale index too."""
    rng = np.random.default_rng(0)
    return [
        render.UnitPage(
            kind="mlp",
            key=f"{row // 1024}-{row % 1024}",
            title="",
            layer=str(row // 1024),
            entropy=float(rng.uniform(0, np.log(16))),
            affinity_F=rng.dirichlet(np.ones(16)),
            hist_counts_B=np.zeros(4),
            hist_edges_B=np.zeros(5),
            images_K=np.arange(3),
            acts_K=rng.normal(size=3),
            activation="mean",
            page=False,
        )
        for row in range(n_rows)
    ]


def synthetic_index(folder: Path, n_rows: int) -> Path:
    """An index of :func:`synthetic_units`, with the atlas's assets."""
    units = synthetic_units(n_rows)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    (folder / "index.html").write_text(render.index_html(units, "synthetic", [("dataset", "made up")]))
    print(f"synthetic index of {n_rows} rows written in {time.perf_counter() - start:.1f} s")
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, folder / name)
    return folder / "index.html"


# Each measured in the page: the script's work and the layout that follows it (offsetHeight forces it).
_ACTIONS = {
    "sort by entropy": "document.querySelector(\"button[data-sort='entropy']\").click()",
    "filter a layer": (
        "const s = document.getElementById('f-layer'); s.value = s.options[s.options.length - 1].value;"
        "s.dispatchEvent(new Event('change'))"
    ),
    "search": ("const f = document.getElementById('f-search'); f.value = '-100'; f.dispatchEvent(new Event('input'))"),
}


def browser_times(index: Path, repeats: int) -> tuple[str, dict[str, float]]:
    """The index's count of units, and the median seconds over ``repeats`` fresh page loads of the load (to
    the load event, the script run) and of each of :data:`_ACTIONS` in turn."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"page load": [], **{name: [] for name in _ACTIONS}}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        for _ in range(repeats):
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            start = time.perf_counter()
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            page.evaluate("document.body.offsetHeight")
            times["page load"].append(time.perf_counter() - start)
            units = page.locator("#count").text_content()
            for name, action in _ACTIONS.items():
                ms = page.evaluate(
                    f"() => {{ const t = performance.now(); {action}; document.body.offsetHeight;"
                    " return performance.now() - t; }"
                )
                times[name].append(ms / 1000)
            if errors:
                raise RuntimeError(f"{index}: {errors}")
            page.close()
        browser.close()
    return units, {name: statistics.median(values) for name, values in times.items()}


def report_browser(index: Path, repeats: int) -> None:
    units, times = browser_times(index, repeats)
    print(f"index {index}: {index.stat().st_size / MIB:.1f} MiB, {units}")
    for name, seconds in times.items():
        print(f"  Chromium {name}: {seconds:.2f} s")


def main() -> None:
    args = _parse_args()
    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_build:
            kwargs = make_run(work, args)
            seconds, imported_mib, peak_mib, manifest = timed_build(kwargs)
            files = manifest["files"]
            print(
                f"build_atlas: {sum(manifest['units'].values())} units {manifest['units']}, pages {manifest['pages']}, "
                f"dead {manifest['dead']}: {seconds:.1f} s, peak RSS {peak_mib:.0f} MiB ({imported_mib:.0f} MiB "
                "before the build, with the imports)"
            )
            print(
                f"site: {len(files) + 1} files, {sum(f['bytes'] for f in files.values()) / MIB:.1f} MiB; "
                f"index.html {files['index.html']['bytes'] / MIB:.1f} MiB"
            )
            report_browser(Path(kwargs["site"]) / "index.html", args.repeats)
        for n_rows in args.synthetic_rows:
            report_browser(synthetic_index(work / f"synthetic-{n_rows}", n_rows), args.repeats)
    finally:
        if args.keep is None:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
