rule train_sae:
    input:
        store=ACTIVATIONS,
    output:
        checkpoint="results/sae/{model}/{dataset}/{site}/checkpoint.pt",
        checkpoint_sha256=sha256_record(
            "results/sae/{model}/{dataset}/{site}/checkpoint.pt"
        ),
        log="results/sae/{model}/{dataset}/{site}/training.tsv",
    log:
        "logs/train_sae/{model}/{dataset}/{site}.log",
    benchmark:
        "results/benchmarks/train_sae/{model}/{dataset}/{site}.tsv"
    wildcard_constraints:
        site=name_pattern(CONFIG.plan.all_sae_sites),
        dataset=name_pattern([PLAN.sae_dataset]),
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("train_sae"),
        runtime=RESOURCES.runtime("train_sae"),
    params:
        # Without what only the DAG or the evaluation uses.
        sae=CONFIG.sae.params("models", "sites", "evaluate"),
        device=CONFIG.extraction.device,
        code=script_code("train_sae.py"),
    script:
        "../scripts/train_sae.py"


rule plot_sae_training:
    input:
        log="results/sae/{model}/{dataset}/{site}/training.tsv",
    output:
        figure=reported(
            "results/sae/{model}/{dataset}/{site}/training.png",
            "sae_training.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
    log:
        "logs/plot_sae_training/{model}/{dataset}/{site}.log",
    wildcard_constraints:
        site=name_pattern(CONFIG.plan.all_sae_sites),
        dataset=name_pattern([PLAN.sae_dataset]),
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_sae_training"),
        runtime=RESOURCES.runtime("plot_sae_training"),
    params:
        label=sae_label,
        code=script_code("plot_sae_training.py"),
    script:
        "../scripts/plot_sae_training.py"


rule evaluate_sae:
    input:
        unpack(sae_evaluation_inputs),
        store=ACTIVATIONS,
        sae="results/sae/{model}/{dataset}/{site}/checkpoint.pt",
        sae_sha256=sha256_record("results/sae/{model}/{dataset}/{site}/checkpoint.pt"),
        checkpoint=checkpoint_input,
    output:
        metrics=reported(
            "results/sae/{model}/{dataset}/{site}/metrics.json",
            "sae_metrics.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
        latents=reported(
            "results/sae/{model}/{dataset}/{site}/latents.tsv",
            "sae_latents.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
        alignment=reported(
            "results/sae/{model}/{dataset}/{site}/alignment.tsv",
            "sae_alignment.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
        top_latents="results/sae/{model}/{dataset}/{site}/top_latents.npz",
    log:
        "logs/evaluate_sae/{model}/{dataset}/{site}.log",
    benchmark:
        "results/benchmarks/evaluate_sae/{model}/{dataset}/{site}.tsv"
    wildcard_constraints:
        site=name_pattern(CONFIG.plan.all_sae_sites),
        dataset=name_pattern([PLAN.sae_dataset]),
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("evaluate_sae"),
        runtime=RESOURCES.runtime("evaluate_sae"),
    params:
        model=model_params,
        model_config=model_config,
        evaluation=CONFIG.sae.evaluate.params(),
        # A natural-image SAE dataset's classifier templates and concept words (None on Shapes).
        natural=CONFIG.sae_natural_params(),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        code=script_code("evaluate_sae.py"),
    script:
        "../scripts/evaluate_sae.py"


rule plot_sae_evaluation:
    input:
        metrics="results/sae/{model}/{dataset}/{site}/metrics.json",
        top_latents="results/sae/{model}/{dataset}/{site}/top_latents.npz",
    output:
        histogram=reported(
            "results/sae/{model}/{dataset}/{site}/histogram.png",
            "sae_histogram.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
        top_images=reported(
            "results/sae/{model}/{dataset}/{site}/top_images.png",
            "sae_top_images.rst",
            "8 Sparse autoencoders",
            "{model} at {site}",
        ),
    log:
        "logs/plot_sae_evaluation/{model}/{dataset}/{site}.log",
    wildcard_constraints:
        site=name_pattern(CONFIG.plan.all_sae_sites),
        dataset=name_pattern([PLAN.sae_dataset]),
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_sae_evaluation"),
        runtime=RESOURCES.runtime("plot_sae_evaluation"),
    params:
        dense_threshold=CONFIG.sae.evaluate.dense_threshold,
        label=sae_label,
        code=script_code("plot_sae_evaluation.py"),
    script:
        "../scripts/plot_sae_evaluation.py"
