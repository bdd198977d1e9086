from clipmech.config import ACTIVATIONS_BEGUN, ACTIVATIONS_PART, ACTIVATIONS_PART_DONE
from clipmech.stores.locks import no_writer

# extraction.parts = 1: one job writes each activation store (extract_activations). K > 1: a template
# job, K part jobs (each its own range of whole chunks) and a publishing job write it, the same byte for
# byte (docs/stores.md); the store is then publish_activations' output.
if CONFIG.extraction.parts == 1:

    ruleorder: extract_activations > publish_activations

else:

    ruleorder: publish_activations > extract_activations


rule extract_activations:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        unlocked=no_writer(ACTIVATIONS),
    output:
        store=directory(ACTIVATIONS),
    log:
        "logs/extract_activations/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/extract_activations/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("extract_activations"),
        runtime=RESOURCES.runtime("extract_activations"),
    params:
        model=model_params,
        model_config=model_config,
        extraction=lambda wildcards: CONFIG.extraction.params_of(wildcards.model),
        code=script_code("extract_activations.py"),
    script:
        "../scripts/extract_activations.py"


rule begin_activations:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        unlocked=no_writer(ACTIVATIONS),
    output:
        marker=temp(ACTIVATIONS_BEGUN),
    log:
        "logs/begin_activations/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/begin_activations/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=RESOURCES.mem_mb("begin_activations"),
        runtime=RESOURCES.runtime("begin_activations"),
    params:
        model=model_params,
        model_config=model_config,
        store=lambda wildcards: ACTIVATIONS.format(**wildcards),
        extraction=lambda wildcards: CONFIG.extraction.params_of(wildcards.model),
        # The store's code hash, whatever K: these rules' stages share stages/extract_activations.py.
        code=script_code("extract_activations.py"),
    script:
        "../scripts/begin_activations.py"


rule extract_activations_part:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        template=ACTIVATIONS_BEGUN,
        unlocked=no_writer(ACTIVATIONS_PART),
    output:
        marker=temp(ACTIVATIONS_PART_DONE),
    log:
        "logs/extract_activations/{model}/{dataset}.part-{part}.log",
    benchmark:
        "results/benchmarks/extract_activations/{model}/{dataset}.part-{part}.tsv"
    wildcard_constraints:
        part=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("extract_activations_part"),
        runtime=RESOURCES.runtime("extract_activations_part"),
    params:
        model=model_params,
        model_config=model_config,
        extraction=lambda wildcards: CONFIG.extraction.params_of(wildcards.model),
        store=lambda wildcards: ACTIVATIONS.format(**wildcards),
        parts=CONFIG.extraction.parts,
        code=script_code("extract_activations.py"),
    script:
        "../scripts/extract_activations_part.py"


rule publish_activations:
    input:
        markers=expand(
            ACTIVATIONS_PART_DONE,
            part=CONFIG.extraction.part_indices,
            allow_missing=True,
        ),
        unlocked=no_writer(ACTIVATIONS),
    output:
        store=directory(ACTIVATIONS),
    log:
        "logs/publish_activations/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/publish_activations/{model}/{dataset}.tsv"
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("publish_activations"),
        runtime=RESOURCES.runtime("publish_activations"),
    params:
        parts=CONFIG.extraction.parts,
        code=script_code("extract_activations.py"),
    script:
        "../scripts/publish_activations.py"
