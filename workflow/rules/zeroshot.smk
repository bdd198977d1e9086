rule zero_shot_classifier:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
    output:
        classifier="results/zeroshot/{model}/{dataset}/classifier.npz",
        classifier_sha256=sha256_record(
            "results/zeroshot/{model}/{dataset}/classifier.npz"
        ),
    log:
        "logs/zero_shot_classifier/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/zero_shot_classifier/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("zero_shot_classifier"),
        runtime=RESOURCES.runtime("zero_shot_classifier"),
    params:
        model=model_params,
        model_config=model_config,
        zeroshot_params=CONFIG.zeroshot.pick("templates", "batch_size"),
        code=script_code("zero_shot_classifier.py"),
    script:
        "../scripts/zero_shot_classifier.py"


rule zero_shot:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        classifier="results/zeroshot/{model}/{dataset}/classifier.npz",
        classifier_sha256=sha256_record(
            "results/zeroshot/{model}/{dataset}/classifier.npz"
        ),
    output:
        accuracy="results/zeroshot/{model}/{dataset}/accuracy.tsv",
        per_class="results/zeroshot/{model}/{dataset}/per_class.tsv",
    log:
        "logs/zero_shot/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/zero_shot/{model}/{dataset}.tsv"
    conda:
        ENV
    # Decoding workers: about one per 100-200 images/s the GPU consumes (benchmarks/loader.py).
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("zero_shot"),
        runtime=RESOURCES.runtime("zero_shot"),
    params:
        model=model_params,
        model_config=model_config,
        zeroshot_params=CONFIG.zeroshot.pick("templates", "batch_size"),
        code=script_code("zero_shot.py"),
    script:
        "../scripts/zero_shot.py"
