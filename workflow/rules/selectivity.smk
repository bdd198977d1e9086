rule neuron_selectivity:
    input:
        store=ACTIVATIONS,
        dataset_dir=DATA,
    output:
        units=reported(
            "results/selectivity/{model}/{dataset}/units.tsv",
            "selectivity_units.rst",
            "3 Neuron selectivity",
        ),
        topk="results/selectivity/{model}/{dataset}/topk.tsv",
        null="results/selectivity/{model}/{dataset}/null.tsv",
    log:
        "logs/neuron_selectivity/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/neuron_selectivity/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("neuron_selectivity"),
        runtime=RESOURCES.runtime("neuron_selectivity"),
    params:
        selectivity=CONFIG.selectivity.params(),
        seed=CONFIG.seed,
        words=dataset_words,
        code=script_code("neuron_selectivity.py"),
    script:
        "../scripts/neuron_selectivity.py"


rule plot_selectivity:
    input:
        store=ACTIVATIONS,
        dataset_dir=synthetic_data,
        units="results/selectivity/{model}/{dataset}/units.tsv",
        topk="results/selectivity/{model}/{dataset}/topk.tsv",
        null="results/selectivity/{model}/{dataset}/null.tsv",
    output:
        entropy=reported(
            "results/selectivity/{model}/{dataset}/entropy_by_layer.png",
            "entropy_by_layer.rst",
            "3 Neuron selectivity",
        ),
        top_images=reported(
            "results/selectivity/{model}/{dataset}/top_images.png",
            "top_images.rst",
            "3 Neuron selectivity",
        ),
        heatmaps=reported(
            "results/selectivity/{model}/{dataset}/heatmaps.png",
            "heatmaps.rst",
            "3 Neuron selectivity",
        ),
    log:
        "logs/plot_selectivity/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_selectivity"),
        runtime=RESOURCES.runtime("plot_selectivity"),
    params:
        selectivity=CONFIG.selectivity.params(),
        seed=CONFIG.seed,
        code=script_code("plot_selectivity.py"),
    script:
        "../scripts/plot_selectivity.py"
