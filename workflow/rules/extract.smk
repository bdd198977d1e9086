from clipmech.stores.locks import no_writer


rule extract_activations:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        unlocked=no_writer(ACTIVATIONS),
    output:
        store=directory(ACTIVATIONS),
    log:
        "logs/extract_activations/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/extract_activations/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=8000,
        runtime=120,
    params:
        model=model_params,
        model_config=model_config,
        extraction=lambda wildcards: CONFIG.extraction.params_of(wildcards.model),
        code=script_code("extract_activations.py"),
    script:
        "../scripts/extract_activations.py"
