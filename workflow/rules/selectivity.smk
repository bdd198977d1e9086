rule neuron_selectivity:
    input:
        store="results/activations/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
    output:
        units=report(
            "results/selectivity/{model}/{dataset}/units.tsv",
            caption="../report/selectivity_units.rst",
            category="3 Neuron selectivity",
            subcategory="{model} on {dataset}",
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
        mem_mb=4000,
        runtime=60,
    params:
        selectivity=config.get("selectivity", {}),
        seed=config["seed"],
        code=script_code("neuron_selectivity.py"),
    script:
        "../scripts/neuron_selectivity.py"


rule plot_selectivity:
    input:
        store="results/activations/{model}/{dataset}.zarr",
        data="results/datasets/{dataset}/data",
        units="results/selectivity/{model}/{dataset}/units.tsv",
        topk="results/selectivity/{model}/{dataset}/topk.tsv",
        null="results/selectivity/{model}/{dataset}/null.tsv",
    output:
        entropy=report(
            "results/selectivity/{model}/{dataset}/entropy_by_layer.png",
            caption="../report/entropy_by_layer.rst",
            category="3 Neuron selectivity",
            subcategory="{model} on {dataset}",
        ),
        top_images=report(
            "results/selectivity/{model}/{dataset}/top_images.png",
            caption="../report/top_images.rst",
            category="3 Neuron selectivity",
            subcategory="{model} on {dataset}",
        ),
        heatmaps=report(
            "results/selectivity/{model}/{dataset}/heatmaps.png",
            caption="../report/heatmaps.rst",
            category="3 Neuron selectivity",
            subcategory="{model} on {dataset}",
        ),
    log:
        "logs/plot_selectivity/{model}/{dataset}.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        selectivity=config.get("selectivity", {}),
        seed=config["seed"],
        code=script_code("plot_selectivity.py"),
    script:
        "../scripts/plot_selectivity.py"
