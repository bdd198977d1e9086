rule patch_components:
    input:
        # A pairs dataset (minimal pairs) or a captions dataset (image-caption pairs with foils, methods.md Sec. 8.1).
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
    output:
        recovery=reported(
            "results/patching/{model}/{dataset}/recovery.tsv",
            "patching_recovery.rst",
            "7 Causal tracing",
        ),
        circuit=reported(
            "results/patching/{model}/{dataset}/circuit.tsv",
            "patching_circuit.rst",
            "7 Causal tracing",
        ),
        circuit_summary=reported(
            "results/patching/{model}/{dataset}/circuit_summary.tsv",
            "patching_circuit_summary.rst",
            "7 Causal tracing",
        ),
        circuit_paths=reported(
            "results/patching/{model}/{dataset}/circuit_paths.tsv",
            "patching_circuit_paths.rst",
            "7 Causal tracing",
        ),
        circuit_paths_summary=reported(
            "results/patching/{model}/{dataset}/circuit_paths_summary.tsv",
            "patching_circuit_paths_summary.rst",
            "7 Causal tracing",
        ),
        runs=reported(
            "results/patching/{model}/{dataset}/runs.tsv",
            "patching_runs.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/patch_components/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/patch_components/{model}/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(
            CONFIG.datasets_of_kind("pairs") + CONFIG.datasets_of_kind("captions")
        ),
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("patch_components"),
        runtime=RESOURCES.runtime("patch_components"),
    params:
        model=model_params,
        model_config=model_config,
        patching=tracing_params,
        # A captions dataset's foils and concept words; None for a pairs dataset.
        foil=patching_foil,
        words=dataset_words,
        device=CONFIG.extraction.device,
        precision=CONFIG.extraction.precision,
        code=script_code("patch_components.py"),
    script:
        "../scripts/patch_components.py"


rule plot_patching:
    input:
        recovery="results/patching/{model}/{dataset}/recovery.tsv",
        circuit="results/patching/{model}/{dataset}/circuit.tsv",
    output:
        visual=reported(
            "results/patching/{model}/{dataset}/recovery_visual.png",
            "patching_maps.rst",
            "7 Causal tracing",
        ),
        text=reported(
            "results/patching/{model}/{dataset}/recovery_text.png",
            "patching_maps.rst",
            "7 Causal tracing",
        ),
        heads=reported(
            "results/patching/{model}/{dataset}/heads.png",
            "patching_heads.rst",
            "7 Causal tracing",
        ),
        circuit_figure=reported(
            "results/patching/{model}/{dataset}/circuit.png",
            "patching_circuit_figure.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/plot_patching/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_patching"),
        runtime=RESOURCES.runtime("plot_patching"),
    params:
        threshold=CONFIG.patching.circuit.threshold,
        label=pair_label,
        code=script_code("plot_patching.py"),
    script:
        "../scripts/plot_patching.py"


rule concept_auroc:
    input:
        # Any dataset with concepts (methods.md Sec. 8.5); one without is refused with the reason.
        dataset_dir=concept_data,
        checkpoint=checkpoint_input,
    output:
        auroc="results/patching/{model}/{dataset}/auroc.tsv",
        summary=reported(
            "results/patching/{model}/{dataset}/auroc_summary.tsv",
            "concept_auroc_summary.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/concept_auroc/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/concept_auroc/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("concept_auroc"),
        runtime=RESOURCES.runtime("concept_auroc"),
    params:
        model=model_params,
        model_config=model_config,
        concepts=CONFIG.patching.concepts.pick("batch_size", "threshold"),
        words=dataset_words,
        device=CONFIG.extraction.device,
        precision=CONFIG.extraction.precision,
        code=script_code("concept_auroc.py"),
    script:
        "../scripts/concept_auroc.py"


rule intervene_concepts:
    input:
        # The 16 Shapes features of a synthetic dataset (methods.md Sec. 8.6); a natural one is refused.
        dataset_dir=synthetic_data,
        checkpoint=checkpoint_input,
        auroc="results/patching/{model}/{dataset}/auroc.tsv",
    output:
        interventions=reported(
            "results/patching/{model}/{dataset}/interventions.tsv",
            "concept_interventions_table.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/intervene_concepts/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/intervene_concepts/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("intervene_concepts"),
        runtime=RESOURCES.runtime("intervene_concepts"),
    params:
        model=model_params,
        model_config=model_config,
        concepts=CONFIG.patching.concepts.pick(
            "batch_size", "n_units", "scales", "n_bootstrap"
        ),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        code=script_code("intervene_concepts.py"),
    script:
        "../scripts/intervene_concepts.py"


rule plot_concepts:
    input:
        auroc="results/patching/{model}/{dataset}/auroc.tsv",
    output:
        auroc_figure=reported(
            "results/patching/{model}/{dataset}/auroc.png",
            "concept_auroc_figure.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/plot_concepts/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_concepts"),
        runtime=RESOURCES.runtime("plot_concepts"),
    params:
        threshold=CONFIG.patching.concepts.threshold,
        label=pair_label,
        code=script_code("plot_concepts.py"),
    script:
        "../scripts/plot_concepts.py"


rule plot_interventions:
    input:
        interventions="results/patching/{model}/{dataset}/interventions.tsv",
    output:
        interventions_figure=reported(
            "results/patching/{model}/{dataset}/interventions.png",
            "concept_interventions_figure.rst",
            "7 Causal tracing",
        ),
    log:
        "logs/plot_interventions/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_interventions"),
        runtime=RESOURCES.runtime("plot_interventions"),
    params:
        n_units=CONFIG.patching.concepts.n_units,
        label=pair_label,
        code=script_code("plot_interventions.py"),
    script:
        "../scripts/plot_interventions.py"
