rule superposition_separability:
    input:
        units="results/selectivity/{model}/{dataset}/units.tsv",
        store="results/activations/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
    output:
        pairs=report(
            "results/superposition/{model}/{dataset}/pairs.tsv",
            caption="../report/superposition_pairs.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        correlations=report(
            "results/superposition/{model}/{dataset}/correlations.tsv",
            caption="../report/superposition_correlations.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        distance=report(
            "results/superposition/{model}/{dataset}/distance.png",
            caption="../report/superposition_distance.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        misclassification=report(
            "results/superposition/{model}/{dataset}/misclassification.png",
            caption="../report/superposition_misclassification.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/superposition_separability/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/superposition_separability/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        superposition=config["superposition"],
        seed=config["seed"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("superposition_separability.py"),
    script:
        "../scripts/superposition_separability.py"
