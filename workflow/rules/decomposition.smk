rule extract_attnpool:
    input:
        data=attnpool_dataset,
        checkpoint=checkpoint_input,
    output:
        store=directory("results/attnpool/{model}/{dataset}.zarr"),
    log:
        "logs/extract_attnpool/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/extract_attnpool/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        extraction=config["extraction"],
        code=script_code("extract_attnpool.py"),
    script:
        "../scripts/extract_attnpool.py"


rule embed_text:
    input:
        checkpoint=checkpoint_input,
    output:
        text="results/text/{model}/embeddings.npz",
    log:
        "logs/embed_text/{model}.log",
    benchmark:
        "results/benchmarks/embed_text/{model}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        text=config["decomposition"]["text"],
        device=config["extraction"]["device"],
        code=script_code("embed_text.py"),
    script:
        "../scripts/embed_text.py"


rule decompose_attnpool:
    input:
        store="results/attnpool/{model}/{dataset}.zarr",
    output:
        pairs=report(
            "results/decomposition/{model}/{dataset}/pairs.tsv",
            caption="../report/decomposition_pairs.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        summary=report(
            "results/decomposition/{model}/{dataset}/summary.json",
            caption="../report/decomposition_summary.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/decomposition/{model}/{dataset}/norms.png",
            caption="../report/decomposition_norms.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/decompose_attnpool/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/decompose_attnpool/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        decomposition=config["decomposition"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("decompose_attnpool.py"),
    script:
        "../scripts/decompose_attnpool.py"


rule ablate_components:
    input:
        store="results/attnpool/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
        text="results/text/{model}/embeddings.npz",
    output:
        table=report(
            "results/decomposition/{model}/{dataset}/ablation.tsv",
            caption="../report/ablation_table.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/decomposition/{model}/{dataset}/ablation.png",
            caption="../report/ablation_figure.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/ablate_components/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/ablate_components/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        ablation=config["decomposition"]["ablation"],
        chunk_size=config["decomposition"]["chunk_size"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("ablate_components.py"),
    script:
        "../scripts/ablate_components.py"


rule decompose_text:
    input:
        store="results/attnpool/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
        text="results/text/{model}/embeddings.npz",
    output:
        words=report(
            "results/decomposition/{model}/{dataset}/words.tsv",
            caption="../report/text_words.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        class_pairs=report(
            "results/decomposition/{model}/{dataset}/class_pairs.tsv",
            caption="../report/text_class_pairs.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        accuracy=report(
            "results/decomposition/{model}/{dataset}/sparse_accuracy.tsv",
            caption="../report/text_accuracy.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/decomposition/{model}/{dataset}/sparse_accuracy.png",
            caption="../report/text_accuracy_figure.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/decompose_text/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/decompose_text/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=12000,
        runtime=60,
    params:
        text=config["decomposition"]["text"],
        pc_top_k=config["decomposition"]["pc_top_k"],
        chunk_size=config["decomposition"]["chunk_size"],
        device=config["extraction"]["device"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("decompose_text.py"),
    script:
        "../scripts/decompose_text.py"


rule segment_shapes:
    input:
        store="results/attnpool/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
        text="results/text/{model}/embeddings.npz",
    output:
        miou=report(
            "results/segmentation/{model}/{dataset}/miou.tsv",
            caption="../report/segmentation_miou.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        iou="results/segmentation/{model}/{dataset}/iou.tsv",
        heatmaps=report(
            "results/segmentation/{model}/{dataset}/heatmaps.png",
            caption="../report/segmentation_heatmaps.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        masks=report(
            "results/segmentation/{model}/{dataset}/masks.png",
            caption="../report/segmentation_masks.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/segment_shapes/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/segment_shapes/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        segmentation=config["decomposition"]["segmentation"],
        chunk_size=config["decomposition"]["chunk_size"],
        seed=config["seed"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("segment_shapes.py"),
    script:
        "../scripts/segment_shapes.py"


rule segment_pascal_context:
    input:
        checkpoint=checkpoint_input,
    output:
        miou=report(
            "results/pascal-context-59/{model}/miou.tsv",
            caption="../report/pascal_context_miou.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on PASCAL Context-59",
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
        gpu=1,
        mem_mb=16000,
        runtime=600,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        pascal_context=config["decomposition"]["pascal_context"],
        device=config["extraction"]["device"],
        label=lambda wildcards: wildcards.model,
        code=script_code("segment_pascal_context.py"),
    script:
        "../scripts/segment_pascal_context.py"


rule find_registers:
    input:
        store="results/attnpool/{model}/{dataset}.zarr",
    output:
        tokens=report(
            "results/decomposition/{model}/{dataset}/tokens.tsv",
            caption="../report/attention_tokens.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        registers=report(
            "results/decomposition/{model}/{dataset}/registers.tsv",
            caption="../report/register_neurons.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/decomposition/{model}/{dataset}/attention_sink.png",
            caption="../report/attention_sink.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/find_registers/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/find_registers/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        registers=config["decomposition"]["registers"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("find_registers.py"),
    script:
        "../scripts/find_registers.py"


rule synthesize_shift:
    output:
        data=directory("results/shift/{dataset}/splits"),
    log:
        "logs/synthesize_shift/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        shift=config["decomposition"]["shift"],
        image_size=lambda wildcards: config["datasets"][wildcards.dataset]["image_size"],
        code=script_code("synthesize_shift.py"),
    script:
        "../scripts/synthesize_shift.py"


rule monitor_shift:
    input:
        store="results/attnpool/{model}/{dataset}-shift.zarr",  # the splits (SHIFT_SUFFIX)
        data="results/shift/{dataset}/splits",
        text="results/text/{model}/embeddings.npz",
    output:
        splits=report(
            "results/decomposition/{model}/{dataset}/shift_splits.tsv",
            caption="../report/shift_splits.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        correlations=report(
            "results/decomposition/{model}/{dataset}/shift_correlations.tsv",
            caption="../report/shift_correlations.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/decomposition/{model}/{dataset}/shift.png",
            caption="../report/shift_figure.rst",
            category="6 ResNet decomposition",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/monitor_shift/{model}/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        shift=config["decomposition"]["shift"],
        chunk_size=config["decomposition"]["chunk_size"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("monitor_shift.py"),
    script:
        "../scripts/monitor_shift.py"
