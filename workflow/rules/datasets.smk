rule synthesize_shapes:
    output:
        data=directory(DATA),
    log:
        "logs/synthesize_shapes/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize_shapes/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(CONFIG.datasets_of_kind("shapes")),
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("synthesize_shapes"),
        runtime=RESOURCES.runtime("synthesize_shapes"),
    params:
        spec=dataset_spec,
        code=script_code("synthesize_shapes.py"),
    script:
        "../scripts/synthesize_shapes.py"


rule synthesize_shift:
    output:
        data=directory(DATA),
    log:
        "logs/synthesize_shift/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize_shift/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(CONFIG.datasets_of_kind("shift")),
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("synthesize_shift"),
        runtime=RESOURCES.runtime("synthesize_shift"),
    params:
        spec=dataset_spec,
        image_size=shift_image_size,
        code=script_code("synthesize_shift.py"),
    script:
        "../scripts/synthesize_shift.py"


rule synthesize_pairs:
    output:
        data=directory(DATA),
    log:
        "logs/synthesize_pairs/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize_pairs/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(CONFIG.datasets_of_kind("pairs")),
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("synthesize_pairs"),
        runtime=RESOURCES.runtime("synthesize_pairs"),
    params:
        spec=dataset_spec,
        code=script_code("synthesize_pairs.py"),
    script:
        "../scripts/synthesize_pairs.py"


rule index_images:
    output:
        data=directory(DATA),
    log:
        "logs/index_images/{dataset}.log",
    benchmark:
        "results/benchmarks/index_images/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(NATURAL_DATASETS),
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("index_images"),
        runtime=RESOURCES.runtime("index_images"),
    params:
        spec=dataset_spec,
        code=script_code("index_images.py"),
    script:
        "../scripts/index_images.py"


rule plot_dataset:
    input:
        dataset_dir=synthetic_data,
    output:
        preview=reported(
            "results/datasets/{dataset}/preview.png",
            "dataset_preview.rst",
            "1 Datasets",
            "{dataset}",
        ),
    log:
        "logs/plot_dataset/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_dataset"),
        runtime=RESOURCES.runtime("plot_dataset"),
    params:
        code=script_code("plot_dataset.py"),
    script:
        "../scripts/plot_dataset.py"
