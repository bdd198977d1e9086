rule binding_benchmark:
    input:
        store="results/activations/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
        checkpoint=checkpoint_input,
    output:
        trials=report(
            "results/binding/{model}/{dataset}/trials.tsv",
            caption="../report/binding_trials.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        accuracy=report(
            "results/binding/{model}/{dataset}/accuracy.tsv",
            caption="../report/binding_accuracy.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/binding/{model}/{dataset}/accuracy.png",
            caption="../report/binding_figure.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/binding_benchmark/{model}/{dataset}.log",
    conda:
        ENV
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        binding=config["binding"],
        seed=config["seed"],
        device=config["extraction"]["device"],
        batch_size=config["extraction"]["batch_size"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("binding_benchmark.py"),
    script:
        "../scripts/binding_benchmark.py"
