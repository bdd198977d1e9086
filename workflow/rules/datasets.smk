rule synthesize_shapes:
    output:
        data=directory("results/datasets/{dataset}/data"),
    params:
        spec=lambda wildcards: config["datasets"][wildcards.dataset],
        code=script_code("synthesize_shapes.py"),
    log:
        "logs/synthesize_shapes/{dataset}.log",
    conda:
        ENV
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
    params:
        code=script_code("plot_dataset.py"),
    log:
        "logs/plot_dataset/{dataset}.log",
    conda:
        ENV
    script:
        "../scripts/plot_dataset.py"
