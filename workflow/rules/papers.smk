# One table per source paper: its reported numbers beside ours (methods.md Sec. 11).
from clipmech.papers.numbers import PAPERS
from clipmech.papers.sources import paper_inputs, paper_sources


rule compare_paper:
    input:
        unpack(lambda wildcards: paper_inputs(CONFIG, wildcards.paper)),
    output:
        comparison=reported(
            "results/papers/{paper}.tsv",
            "paper_comparison.rst",
            "11 Paper: {paper}",
            "{paper}",
        ),
    log:
        "logs/compare_paper/{paper}.log",
    wildcard_constraints:
        paper=name_pattern(PAPERS),
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("compare_paper"),
        runtime=RESOURCES.runtime("compare_paper"),
    params:
        sources=lambda wildcards: paper_sources(CONFIG, wildcards.paper),
        code=script_code("compare_paper.py"),
    script:
        "../scripts/compare_paper.py"
