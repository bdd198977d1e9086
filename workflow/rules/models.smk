rule train_clip:
    output:
        checkpoint=CHECKPOINT,
        metrics=reported(
            "results/models/{model}/metrics.json",
            "model_metrics.rst",
            "2 Models",
            "{model}",
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
        mem_mb=RESOURCES.mem_mb("train_clip"),
        runtime=RESOURCES.runtime("train_clip"),
    params:
        architecture=architecture,
        model_config=model_config,
        train=train_params,
        code=script_code("train_clip.py"),
    script:
        "../scripts/train_clip.py"


rule plot_training:
    input:
        metrics="results/models/{model}/metrics.json",
        losses="results/models/{model}/losses.tsv",
    output:
        figure=reported(
            "results/models/{model}/loss_curve.png",
            "loss_curve.rst",
            "2 Models",
            "{model}",
        ),
    log:
        "logs/plot_training/{model}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_training"),
        runtime=RESOURCES.runtime("plot_training"),
    params:
        code=script_code("plot_training.py"),
    script:
        "../scripts/plot_training.py"
