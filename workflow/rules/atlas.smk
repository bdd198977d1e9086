rule build_atlas:
    input:
        unpack(atlas_inputs),
    output:
        site=directory("results/atlas/{model}"),
        summary=reported(
            "results/atlas/{model}.tsv",
            "atlas.rst",
            "10 Atlas",
            "{model}",
        ),
    log:
        "logs/build_atlas/{model}.log",
    benchmark:
        "results/benchmarks/build_atlas/{model}.tsv"
    wildcard_constraints:
        model=name_pattern(CONFIG.atlas.models),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("build_atlas"),
        runtime=RESOURCES.runtime("build_atlas"),
    params:
        dataset=CONFIG.plan.atlas_dataset,
        # Algorithm 1's k and reduction: those of the selectivity tables the pages read.
        atlas={
            **CONFIG.atlas.params("models", "dataset", "k"),
            "k": CONFIG.atlas.k,
            "reduction": CONFIG.selectivity.reduction,
        },
        # The datasets of the analyses whose tables the pages show, named on those tables.
        sources={
            "sae": PLAN.sae_dataset,
            "patching": (CONFIG.patching.datasets or [None])[0],
            "miclip": CONFIG.miclip.dataset,
        },
        # A captions atlas dataset's concept words (None for other kinds).
        concept_words=atlas_concept_words,
        sae_sites=atlas_sae_sites,
        miclip_units=atlas_miclip_units,
        code=script_code("build_atlas.py"),
    script:
        "../scripts/build_atlas.py"
