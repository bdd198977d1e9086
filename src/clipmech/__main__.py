"""``python -m clipmech plan``: what a config's run will take, before any job runs: the disk of every store
(clipmech.storage), the memory and wall time every rule's jobs declare (clipmech.resources) and the forward
passes, FLOPs and hours of causal tracing (clipmech.costs).

    python -m clipmech plan                                  # config/config.yaml
    python -m clipmech plan --configfile config/paper.yaml   # several files merge, later ones win

Reads the config files as Snakemake does (deep-merged in order; config/config.yaml when none is given),
validates them like the Snakefile, and prints every activation and attention-pool store with its
estimated size and the total, then every rule's jobs with the largest ``mem_mb`` and ``runtime`` they declare
(the SLURM profile's --mem and --time) and the largest job, then the cost of each causal tracing job (hours at
``--tflops`` sustained);
exits with status 1 when the stores' total exceeds ``storage.budget_gb``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snakemake.utils import update_config

from clipmech import costs, resources, storage
from clipmech.config import load_config, read_yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipmech", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="print the stores' sizes and the jobs' resources")
    plan.add_argument("--configfile", nargs="+", type=Path, default=[Path("config/config.yaml")])
    plan.add_argument("--directory", type=Path, default=Path("."), help="the working directory (indexed datasets)")
    plan.add_argument(
        "--tflops", type=float, default=50.0, help="sustained TFLOP/s of the device, for the hours (default 50)"
    )
    args = parser.parse_args(argv)
    raw: dict = {}
    for path in args.configfile:
        update_config(raw, read_yaml(path) or {})
    try:
        config = load_config(raw)
    except ValueError as error:  # the config's own errors name the key and what it allows: no traceback
        print(f"config error: {error}", file=sys.stderr)
        return 2
    stores = storage.storage_plan(config, args.directory)
    print(storage.format_plan(stores, config.storage.budget_gb))
    print()
    print(resources.format_jobs(resources.plan_jobs(config, str(args.directory)), config.extraction.gpus))
    if config.plan.patchings:
        traced = [costs.tracing_cost(config, model, dataset) for model, dataset in config.plan.patchings]
        print()
        print(costs.format_costs(traced, args.tflops))
    try:
        storage.check_budget(stores, config.storage.budget_gb)
    except ValueError as error:
        print(f"\n{error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
