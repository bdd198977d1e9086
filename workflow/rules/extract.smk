rule extract_activations:
    input:
        data="results/datasets/{dataset}/data",
        checkpoint=checkpoint_input,
    output:
        store=directory("results/activations/{model}/{dataset}.zarr"),
    log:
        "logs/extract_activations/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/extract_activations/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=gpu_request(),
        mem_mb=8000,
        runtime=120,
    params:
        model=model_params,
        extraction=config.get("extraction", {}),
        code=script_code("extract_activations.py"),
    script:
        "../scripts/extract_activations.py"
