rule synthesize_shapes:
    output:
        data=directory("results/datasets/{dataset}/data"),
    log:
        "logs/synthesize_shapes/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        code=script_code("synthesize_shapes.py"),
    script:
        "../scripts/synthesize_shapes.py"


rule plot_dataset:
    input:
        data="results/datasets/{dataset}/data",
    output:
        preview=report(
            "results/datasets/{dataset}/preview.png",
            caption="../report/dataset_preview.rst",
            category="1 Datasets",
            subcategory="{dataset}",
        ),
    log:
        "logs/plot_dataset/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        code=script_code("plot_dataset.py"),
    script:
        "../scripts/plot_dataset.py"
