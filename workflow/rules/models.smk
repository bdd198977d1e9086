rule train_clip:
    output:
        checkpoint="results/models/{model}/checkpoint.pt",
        metrics=report(
            "results/models/{model}/metrics.json",
            caption="../report/model_metrics.rst",
            category="2 Models",
            subcategory="{model}",
        ),
        losses="results/models/{model}/losses.tsv",
    log:
        "logs/train_clip/{model}.log",
    benchmark:
        "results/benchmarks/train_clip/{model}.tsv"
    conda:
        ENV
    # Tiny models: two 1-thread trainings side by side beat two 2-thread ones in turn (the ViT runs
    # at 3.0 steps/s on 1 thread next to another job, 4.1 alone on 2).
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        architecture=lambda wildcards: config["models"][wildcards.model]["architecture"],
        train=train_params,
        code=script_code("train_clip.py"),
    script:
        "../scripts/train_clip.py"


rule plot_training:
    input:
        metrics="results/models/{model}/metrics.json",
        losses="results/models/{model}/losses.tsv",
    output:
        figure=report(
            "results/models/{model}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="2 Models",
            subcategory="{model}",
        ),
    log:
        "logs/plot_training/{model}.log",
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        code=script_code("plot_training.py"),
    script:
        "../scripts/plot_training.py"
