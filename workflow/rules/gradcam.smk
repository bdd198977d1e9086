rule gradcam_binding:
    input:
        data="results/datasets/{dataset}/data",
        checkpoint=checkpoint_input,
    output:
        pointing=report(
            "results/gradcam/{model}/{dataset}/pointing.tsv",
            caption="../report/gradcam_pointing.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        summary=report(
            "results/gradcam/{model}/{dataset}/summary.tsv",
            caption="../report/gradcam_summary.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
        figure=report(
            "results/gradcam/{model}/{dataset}/examples.png",
            caption="../report/gradcam_examples.rst",
            category="4 Binding",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/gradcam_binding/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/gradcam_binding/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wildcards: model_entry(wildcards.model),
        gradcam=config["gradcam"],
        seed=config["seed"],
        device=config["extraction"]["device"],
        label=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        code=script_code("gradcam_binding.py"),
    script:
        "../scripts/gradcam_binding.py"
