"""The paper comparisons are planned: one compare_paper job per paper on the tiny config (a dry run)."""

from __future__ import annotations

from snakemake_cli import TINY, planned_jobs

from clipmech.papers.numbers import PAPERS


def test_a_comparison_per_paper_is_planned(tmp_path):
    jobs = planned_jobs("--configfile", TINY, workdir=tmp_path)
    assert jobs["compare_paper"] == len(PAPERS)
