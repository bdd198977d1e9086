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
        examples="results/gradcam/{model}/{dataset}/examples.npz",
        examples_sha256=sha256_record("results/gradcam/{model}/{dataset}/examples.npz"),
    log:
        "logs/gradcam_binding/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/gradcam_binding/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("gradcam_binding"),
        runtime=RESOURCES.runtime("gradcam_binding"),
    params:
        model=model_params,
        model_config=model_config,
        gradcam=CONFIG.gradcam.params(),
        seed=CONFIG.seed,
        device=CONFIG.extraction.device,
        code=script_code("gradcam_binding.py"),
    script:
        "../scripts/gradcam_binding.py"


rule plot_gradcam:
    input:
        examples="results/gradcam/{model}/{dataset}/examples.npz",
        examples_sha256=sha256_record("results/gradcam/{model}/{dataset}/examples.npz"),
    output:
        figure=reported(
            "results/gradcam/{model}/{dataset}/examples.png",
            "gradcam_examples.rst",
            "4 Binding",
        ),
    log:
        "logs/plot_gradcam/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_gradcam"),
        runtime=RESOURCES.runtime("plot_gradcam"),
    params:
        label=pair_label,
        code=script_code("plot_gradcam.py"),
    script:
        "../scripts/plot_gradcam.py"
