rule patch_components:
    input:
        data="results/datasets/{dataset}/data",
        checkpoint=checkpoint_input,
    output:
        recovery=reported(
            "results/patching/{model}/{dataset}/recovery.tsv",
            "patching_recovery.rst",
            "8 Causal tracing",
        ),
        circuit=reported(
            "results/patching/{model}/{dataset}/circuit.tsv",
            "patching_circuit.rst",
            "8 Causal tracing",
        ),
        circuit_summary=reported(
            "results/patching/{model}/{dataset}/circuit_summary.tsv",
            "patching_circuit_summary.rst",
            "8 Causal tracing",
        ),
        runs=reported(
            "results/patching/{model}/{dataset}/runs.tsv",
            "patching_runs.rst",
            "8 Causal tracing",
        ),
    log:
        "logs/patch_components/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/patch_components/{model}/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(datasets_of_kind("pairs")),
    conda:
        ENV
    threads: 2
    resources:
        gpu=gpu_request(),
        mem_mb=8000,
        runtime=240,
    params:
        model=model_params,
        patching=patching_params,
        device=config["extraction"]["device"],
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
            "8 Causal tracing",
        ),
        text=reported(
            "results/patching/{model}/{dataset}/recovery_text.png",
            "patching_maps.rst",
            "8 Causal tracing",
        ),
        heads=reported(
            "results/patching/{model}/{dataset}/heads.png",
            "patching_heads.rst",
            "8 Causal tracing",
        ),
        circuit=reported(
            "results/patching/{model}/{dataset}/circuit.png",
            "patching_circuit_figure.rst",
            "8 Causal tracing",
        ),
    log:
        "logs/plot_patching/{model}/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        threshold=config["patching"]["circuit"]["threshold"],
        label=pair_label,
        code=script_code("plot_patching.py"),
    script:
        "../scripts/plot_patching.py"
