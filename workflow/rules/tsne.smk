rule tsne_shapes:
    input:
        store=ACTIVATIONS,
        dataset_dir=synthetic_data,
    output:
        table=reported(
            "results/tsne/{model}/{dataset}/tsne.tsv",
            "tsne_shapes_table.rst",
            "5 Embedding maps",
        ),
        summary="results/tsne/{model}/{dataset}/tsne.json",
    log:
        "logs/tsne_shapes/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/tsne_shapes/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("tsne_shapes"),
        runtime=RESOURCES.runtime("tsne_shapes"),
    params:
        tsne=CONFIG.tsne.params("cifar10"),
        seed=CONFIG.seed,
        code=script_code("tsne_shapes.py"),
    script:
        "../scripts/tsne_shapes.py"


rule plot_tsne_shapes:
    input:
        table="results/tsne/{model}/{dataset}/tsne.tsv",
        summary="results/tsne/{model}/{dataset}/tsne.json",
    output:
        figure=reported(
            "results/tsne/{model}/{dataset}/tsne.png",
            "tsne_shapes.rst",
            "5 Embedding maps",
        ),
    log:
        "logs/plot_tsne_shapes/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_tsne_shapes"),
        runtime=RESOURCES.runtime("plot_tsne_shapes"),
    params:
        label=pair_label,
        code=script_code("plot_tsne_shapes.py"),
    script:
        "../scripts/plot_tsne_shapes.py"


rule tsne_cifar10:
    input:
        checkpoint=checkpoint_input,
        dataset_dir=CONFIG.named_dataset("tsne.cifar10"),
    output:
        table=reported(
            "results/tsne/{model}/cifar10.tsv",
            "tsne_cifar10_table.rst",
            "5 Embedding maps",
            "{model} on CIFAR-10",
        ),
        summary="results/tsne/{model}/cifar10.json",
    log:
        "logs/tsne_cifar10/{model}.log",
    benchmark:
        "results/benchmarks/tsne_cifar10/{model}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("tsne_cifar10"),
        runtime=RESOURCES.runtime("tsne_cifar10"),
    params:
        model=model_params,
        model_config=model_config,
        tsne=CONFIG.tsne.params("cifar10"),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        batch_size=CONFIG.extraction.batch_size,
        code=script_code("tsne_cifar10.py"),
    script:
        "../scripts/tsne_cifar10.py"


rule plot_tsne_cifar10:
    input:
        table="results/tsne/{model}/cifar10.tsv",
        summary="results/tsne/{model}/cifar10.json",
    output:
        figure=reported(
            "results/tsne/{model}/cifar10.png",
            "tsne_cifar10.rst",
            "5 Embedding maps",
            "{model} on CIFAR-10",
        ),
    log:
        "logs/plot_tsne_cifar10/{model}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_tsne_cifar10"),
        runtime=RESOURCES.runtime("plot_tsne_cifar10"),
    params:
        label=model_label,
        code=script_code("plot_tsne_cifar10.py"),
    script:
        "../scripts/plot_tsne_cifar10.py"
