rule gradcam_binding:
    input:
        dataset_dir=synthetic_data,
        checkpoint=checkpoint_input,
    output:
        pointing=reported(
            "results/gradcam/{model}/{dataset}/pointing.tsv",
            "gradcam_pointing.rst",
            "4 Binding",
        ),
        summary=reported(
            "results/gradcam/{model}/{dataset}/summary.tsv",
            "gradcam_summary.rst",
            "4 Binding",
        ),
        figure=reported(
            "results/gradcam/{model}/{dataset}/examples.png",
            "gradcam_examples.rst",
            "4 Binding",
        ),
    log:
        "logs/gradcam_binding/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/gradcam_binding/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=8000,
        runtime=60,
    params:
        model=model_params,
        model_config=model_config,
        gradcam=CONFIG.gradcam.params(),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        label=pair_label,
        code=script_code("gradcam_binding.py"),
    script:
        "../scripts/gradcam_binding.py"
