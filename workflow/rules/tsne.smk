rule tsne_shapes:
    input:
        store="results/activations/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
    output:
        table=report(
            "results/tsne/{model}/{dataset}/tsne.tsv",
            caption="../report/tsne_shapes_table.rst",
            category="5 Embedding maps",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/tsne/{model}/{dataset}/tsne.png",
            caption="../report/tsne_shapes.rst",
            category="5 Embedding maps",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/tsne_shapes/{model}/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        tsne=config["tsne"],
        seed=config["seed"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("tsne_shapes.py"),
    script:
        "../scripts/tsne_shapes.py"


rule tsne_cifar10:
    input:
        checkpoint=checkpoint_input,
    output:
        table=report(
            "results/tsne/{model}/cifar10.tsv",
            caption="../report/tsne_cifar10_table.rst",
            category="5 Embedding maps",
            subcategory="{model} on CIFAR-10",
        ),
        figure=report(
            "results/tsne/{model}/cifar10.png",
            caption="../report/tsne_cifar10.rst",
            category="5 Embedding maps",
            subcategory="{model} on CIFAR-10",
        ),
    log:
        "logs/tsne_cifar10/{model}.log",
    benchmark:
        "results/benchmarks/tsne_cifar10/{model}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        cifar10=config["cifar10"],
        tsne=config["tsne"],
        seed=config["seed"],
        device=config["extraction"]["device"],
        batch_size=config["extraction"]["batch_size"],
        code=script_code("tsne_cifar10.py"),
    script:
        "../scripts/tsne_cifar10.py"
