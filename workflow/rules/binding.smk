rule binding_benchmark:
    input:
        store=ACTIVATIONS,
        dataset_dir=synthetic_data,
        checkpoint=checkpoint_input,
    output:
        trials=reported(
            "results/binding/{model}/{dataset}/trials.tsv",
            "binding_trials.rst",
            "4 Binding",
        ),
        accuracy=reported(
            "results/binding/{model}/{dataset}/accuracy.tsv",
            "binding_accuracy.rst",
            "4 Binding",
        ),
    log:
        "logs/binding_benchmark/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/binding_benchmark/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("binding_benchmark"),
        runtime=RESOURCES.runtime("binding_benchmark"),
    params:
        model=model_params,
        model_config=model_config,
        binding=CONFIG.binding.params(),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        batch_size=CONFIG.extraction.batch_size,
        code=script_code("binding_benchmark.py"),
    script:
        "../scripts/binding_benchmark.py"


rule plot_binding:
    input:
        accuracy="results/binding/{model}/{dataset}/accuracy.tsv",
    output:
        figure=reported(
            "results/binding/{model}/{dataset}/accuracy.png",
            "binding_figure.rst",
            "4 Binding",
        ),
    log:
        "logs/plot_binding/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_binding"),
        runtime=RESOURCES.runtime("plot_binding"),
    params:
        label=pair_label,
        code=script_code("plot_binding.py"),
    script:
        "../scripts/plot_binding.py"
