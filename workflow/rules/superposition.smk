rule superposition_separability:
    input:
        units="results/selectivity/{model}/{dataset}/units.tsv",
        store=ACTIVATIONS,
        dataset_dir=synthetic_data,
    output:
        pairs=reported(
            "results/superposition/{model}/{dataset}/pairs.tsv",
            "superposition_pairs.rst",
            "4 Binding",
        ),
        correlations=reported(
            "results/superposition/{model}/{dataset}/correlations.tsv",
            "superposition_correlations.rst",
            "4 Binding",
        ),
    log:
        "logs/superposition_separability/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/superposition_separability/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("superposition_separability"),
        runtime=RESOURCES.runtime("superposition_separability"),
    params:
        superposition=CONFIG.superposition.params(),
        seed=CONFIG.seed,
        code=script_code("superposition_separability.py"),
    script:
        "../scripts/superposition_separability.py"


rule plot_superposition:
    input:
        pairs="results/superposition/{model}/{dataset}/pairs.tsv",
        correlations="results/superposition/{model}/{dataset}/correlations.tsv",
    output:
        distance=reported(
            "results/superposition/{model}/{dataset}/distance.png",
            "superposition_distance.rst",
            "4 Binding",
        ),
        misclassification=reported(
            "results/superposition/{model}/{dataset}/misclassification.png",
            "superposition_misclassification.rst",
            "4 Binding",
        ),
    log:
        "logs/plot_superposition/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_superposition"),
        runtime=RESOURCES.runtime("plot_superposition"),
    params:
        superposition=CONFIG.superposition.pick("variance_kept", "threshold"),
        label=pair_label,
        code=script_code("plot_superposition.py"),
    script:
        "../scripts/plot_superposition.py"
