rule monitor_shift:
    input:
        store=shift_store,
        dataset_dir=shift_data,
        text_path="results/text/{model}/embeddings.npz",
        text_path_sha256=sha256_record("results/text/{model}/embeddings.npz"),
    output:
        splits=reported(
            "results/decomposition/{model}/{dataset}/shift_splits.tsv",
            "shift_splits.rst",
            "6 ResNet decomposition",
        ),
        correlations=reported(
            "results/decomposition/{model}/{dataset}/shift_correlations.tsv",
            "shift_correlations.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/monitor_shift/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/monitor_shift/{model}/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(CONFIG.plan.shift_of),
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("monitor_shift"),
        runtime=RESOURCES.runtime("monitor_shift"),
    params:
        shift=CONFIG.decomposition.shift.params(),
        chunk_size=CONFIG.decomposition.chunk_size,
        code=script_code("monitor_shift.py"),
    script:
        "../scripts/monitor_shift.py"


rule plot_shift:
    input:
        splits="results/decomposition/{model}/{dataset}/shift_splits.tsv",
        correlations="results/decomposition/{model}/{dataset}/shift_correlations.tsv",
    output:
        figure=reported(
            "results/decomposition/{model}/{dataset}/shift.png",
            "shift_figure.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_shift/{model}/{dataset}.log",
    wildcard_constraints:
        dataset=name_pattern(CONFIG.plan.shift_of),
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_shift"),
        runtime=RESOURCES.runtime("plot_shift"),
    params:
        top_k=CONFIG.decomposition.shift.top_k,
        label=pair_label,
        code=script_code("plot_shift.py"),
    script:
        "../scripts/plot_shift.py"
