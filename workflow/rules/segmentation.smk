rule segment_shapes:
    input:
        store=ATTNPOOL,
        dataset_dir=synthetic_data,
        text_path="results/text/{model}/embeddings.npz",
        text_path_sha256=sha256_record("results/text/{model}/embeddings.npz"),
    output:
        miou=reported(
            "results/segmentation/{model}/{dataset}/miou.tsv",
            "segmentation_miou.rst",
            "6 ResNet decomposition",
        ),
        iou="results/segmentation/{model}/{dataset}/iou.tsv",
        examples="results/segmentation/{model}/{dataset}/examples.npz",
        examples_sha256=sha256_record(
            "results/segmentation/{model}/{dataset}/examples.npz"
        ),
    log:
        "logs/segment_shapes/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/segment_shapes/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=RESOURCES.mem_mb("segment_shapes"),
        runtime=RESOURCES.runtime("segment_shapes"),
    params:
        segmentation=CONFIG.decomposition.segmentation.params(),
        chunk_size=CONFIG.decomposition.chunk_size,
        seed=CONFIG.seed,
        code=script_code("segment_shapes.py"),
    script:
        "../scripts/segment_shapes.py"


rule plot_segmentation:
    input:
        examples="results/segmentation/{model}/{dataset}/examples.npz",
        examples_sha256=sha256_record(
            "results/segmentation/{model}/{dataset}/examples.npz"
        ),
    output:
        heatmaps=reported(
            "results/segmentation/{model}/{dataset}/heatmaps.png",
            "segmentation_heatmaps.rst",
            "6 ResNet decomposition",
        ),
        masks=reported(
            "results/segmentation/{model}/{dataset}/masks.png",
            "segmentation_masks.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_segmentation/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_segmentation"),
        runtime=RESOURCES.runtime("plot_segmentation"),
    params:
        label=pair_label,
        code=script_code("plot_segmentation.py"),
    script:
        "../scripts/plot_segmentation.py"


rule segment_pascal_context:
    input:
        checkpoint=checkpoint_input,
        dataset_dir=CONFIG.named_dataset("decomposition.pascal_context.dataset"),
    output:
        miou=reported(
            "results/pascal-context-59/{model}/miou.tsv",
            "pascal_context_miou.rst",
            "6 ResNet decomposition",
            "{model} on PASCAL Context-59",
        ),
        iou="results/pascal-context-59/{model}/iou.tsv",
    log:
        "logs/segment_pascal_context/{model}.log",
    benchmark:
        "results/benchmarks/segment_pascal_context/{model}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("segment_pascal_context"),
        runtime=RESOURCES.runtime("segment_pascal_context"),
    params:
        model=model_params,
        model_config=model_config,
        pascal_context=CONFIG.decomposition.pascal_context.params("dataset"),
        device=CONFIG.extraction.device,
        label=model_label,
        code=script_code("segment_pascal_context.py"),
    script:
        "../scripts/segment_pascal_context.py"
