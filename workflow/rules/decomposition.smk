from clipmech.stores.locks import no_writer


rule extract_attnpool:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        unlocked=no_writer(ATTNPOOL),
    output:
        store=directory(ATTNPOOL),
    log:
        "logs/extract_attnpool/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/extract_attnpool/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("extract_attnpool"),
        runtime=RESOURCES.runtime("extract_attnpool"),
    params:
        model=model_params,
        model_config=model_config,
        # What the attention-pool store reads of the section (not the activation stores' sites).
        extraction=CONFIG.extraction.pick("batch_size", "device", "precision"),
        code=script_code("extract_attnpool.py"),
    script:
        "../scripts/extract_attnpool.py"


rule embed_text:
    input:
        checkpoint=checkpoint_input,
    output:
        embeddings="results/text/{model}/embeddings.npz",
        embeddings_sha256=sha256_record("results/text/{model}/embeddings.npz"),
    log:
        "logs/embed_text/{model}.log",
    benchmark:
        "results/benchmarks/embed_text/{model}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("embed_text"),
        runtime=RESOURCES.runtime("embed_text"),
    params:
        model=model_params,
        model_config=model_config,
        text=CONFIG.decomposition.text.params(),
        device=CONFIG.extraction.device,
        code=script_code("embed_text.py"),
    script:
        "../scripts/embed_text.py"


rule decompose_attnpool:
    input:
        store=ATTNPOOL,
    output:
        pairs=reported(
            "results/decomposition/{model}/{dataset}/pairs.tsv",
            "decomposition_pairs.rst",
            "6 ResNet decomposition",
        ),
        summary=reported(
            "results/decomposition/{model}/{dataset}/summary.json",
            "decomposition_summary.rst",
            "6 ResNet decomposition",
        ),
        scores="results/decomposition/{model}/{dataset}/scores.npz",
        scores_sha256=sha256_record(
            "results/decomposition/{model}/{dataset}/scores.npz"
        ),
    log:
        "logs/decompose_attnpool/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/decompose_attnpool/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=RESOURCES.mem_mb("decompose_attnpool"),
        runtime=RESOURCES.runtime("decompose_attnpool"),
    params:
        # The keys the checks read: the rest of the block (text, segmentation...) does not rerun it.
        decomposition=CONFIG.decomposition.pick(
            "chunk_size", "n_checked", "pc_top_k", "max_rel_err"
        ),
        code=script_code("decompose_attnpool.py"),
    script:
        "../scripts/decompose_attnpool.py"


rule plot_decomposition:
    input:
        summary="results/decomposition/{model}/{dataset}/summary.json",
        scores="results/decomposition/{model}/{dataset}/scores.npz",
        scores_sha256=sha256_record(
            "results/decomposition/{model}/{dataset}/scores.npz"
        ),
    output:
        figure=reported(
            "results/decomposition/{model}/{dataset}/norms.png",
            "decomposition_norms.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_decomposition/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_decomposition"),
        runtime=RESOURCES.runtime("plot_decomposition"),
    params:
        label=pair_label,
        code=script_code("plot_decomposition.py"),
    script:
        "../scripts/plot_decomposition.py"


rule ablate_components:
    input:
        unpack(decomposition_inputs(text=False)),
        store=ATTNPOOL,
    output:
        table=reported(
            "results/decomposition/{model}/{dataset}/ablation.tsv",
            "ablation_table.rst",
            "6 ResNet decomposition",
        ),
        tasks="results/decomposition/{model}/{dataset}/ablation_tasks.tsv",
    log:
        "logs/ablate_components/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/ablate_components/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=RESOURCES.mem_mb("ablate_components"),
        runtime=RESOURCES.runtime("ablate_components"),
    params:
        ablation=CONFIG.decomposition.ablation.params(),
        chunk_size=CONFIG.decomposition.chunk_size,
        classifier_spec=decomposition_classifier_spec,
        code=script_code("ablate_components.py"),
    script:
        "../scripts/ablate_components.py"


rule plot_ablation:
    input:
        table="results/decomposition/{model}/{dataset}/ablation.tsv",
        tasks="results/decomposition/{model}/{dataset}/ablation_tasks.tsv",
    output:
        figure=reported(
            "results/decomposition/{model}/{dataset}/ablation.png",
            "ablation_figure.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_ablation/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_ablation"),
        runtime=RESOURCES.runtime("plot_ablation"),
    params:
        label=pair_label,
        code=script_code("plot_ablation.py"),
    script:
        "../scripts/plot_ablation.py"


rule decompose_text:
    input:
        unpack(decomposition_inputs(text=True)),
        store=ATTNPOOL,
    output:
        words=reported(
            "results/decomposition/{model}/{dataset}/words.tsv",
            "text_words.rst",
            "6 ResNet decomposition",
        ),
        class_pairs=reported(
            "results/decomposition/{model}/{dataset}/class_pairs.tsv",
            "text_class_pairs.rst",
            "6 ResNet decomposition",
        ),
        accuracy=reported(
            "results/decomposition/{model}/{dataset}/sparse_accuracy.tsv",
            "text_accuracy.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/decompose_text/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/decompose_text/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("decompose_text"),
        runtime=RESOURCES.runtime("decompose_text"),
    params:
        text=CONFIG.decomposition.text.params(),
        pc_top_k=CONFIG.decomposition.pc_top_k,
        chunk_size=CONFIG.decomposition.chunk_size,
        device=CONFIG.extraction.device,
        classifier_spec=decomposition_classifier_spec,
        code=script_code("decompose_text.py"),
    script:
        "../scripts/decompose_text.py"


rule plot_sparse_accuracy:
    input:
        accuracy="results/decomposition/{model}/{dataset}/sparse_accuracy.tsv",
        text_path="results/text/{model}/embeddings.npz",
        text_path_sha256=sha256_record("results/text/{model}/embeddings.npz"),
    output:
        figure=reported(
            "results/decomposition/{model}/{dataset}/sparse_accuracy.png",
            "text_accuracy_figure.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_sparse_accuracy/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_sparse_accuracy"),
        runtime=RESOURCES.runtime("plot_sparse_accuracy"),
    params:
        keep_fraction=CONFIG.decomposition.text.keep_fraction,
        label=pair_label,
        code=script_code("plot_sparse_accuracy.py"),
    script:
        "../scripts/plot_sparse_accuracy.py"


rule find_registers:
    input:
        store=ATTNPOOL,
    output:
        tokens=reported(
            "results/decomposition/{model}/{dataset}/tokens.tsv",
            "attention_tokens.rst",
            "6 ResNet decomposition",
        ),
        neurons=reported(
            "results/decomposition/{model}/{dataset}/registers.tsv",
            "register_neurons.rst",
            "6 ResNet decomposition",
        ),
        sample="results/decomposition/{model}/{dataset}/register_sample.tsv",
    log:
        "logs/find_registers/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/find_registers/{model}/{dataset}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=RESOURCES.mem_mb("find_registers"),
        runtime=RESOURCES.runtime("find_registers"),
    params:
        registers=CONFIG.decomposition.registers.params("n_figure_neurons"),
        code=script_code("find_registers.py"),
    script:
        "../scripts/find_registers.py"


rule plot_registers:
    input:
        tokens="results/decomposition/{model}/{dataset}/tokens.tsv",
        neurons="results/decomposition/{model}/{dataset}/registers.tsv",
        sample="results/decomposition/{model}/{dataset}/register_sample.tsv",
    output:
        figure=reported(
            "results/decomposition/{model}/{dataset}/attention_sink.png",
            "attention_sink.rst",
            "6 ResNet decomposition",
        ),
    log:
        "logs/plot_registers/{model}/{dataset}.log",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_registers"),
        runtime=RESOURCES.runtime("plot_registers"),
    params:
        n_figure_neurons=CONFIG.decomposition.registers.n_figure_neurons,
        label=pair_label,
        code=script_code("plot_registers.py"),
    script:
        "../scripts/plot_registers.py"
