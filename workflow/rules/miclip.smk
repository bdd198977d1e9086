from clipmech.config import MICLIP_PROBE_ACTS

# A Shapes miclip.dataset's probe writes the site activations of its images to a zarr store that the evaluation
# reads; a natural-image dataset's probe keeps image-level activations only (methods.md Sec. 9.8).
MICLIP_ACTS = {} if CONFIG.miclip_natural_params() else {"acts": MICLIP_PROBE_ACTS}


rule embed_miclip_concepts:
    input:
        checkpoint=checkpoint_input,
        # A natural-image miclip.dataset's concepts are its own (methods.md Sec. 9.8).
        dataset_dir=DATA,
    output:
        embeddings="results/miclip/reference/{model}/{dataset}.npz",
        embeddings_sha256=sha256_record(
            "results/miclip/reference/{model}/{dataset}.npz"
        ),
    log:
        "logs/embed_miclip_concepts/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/embed_miclip_concepts/{model}/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern([CONFIG.miclip.dataset]),
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("embed_miclip_concepts"),
        runtime=RESOURCES.runtime("embed_miclip_concepts"),
    params:
        model=model_params,
        model_config=model_config,
        n_words=CONFIG.miclip.n_words,
        natural=CONFIG.miclip_natural_params(),
        device=CONFIG.extraction.device,
        code=script_code("embed_miclip_concepts.py"),
    script:
        "../scripts/embed_miclip_concepts.py"


rule probe_miclip:
    input:
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        reference_checkpoint=miclip_reference_checkpoint,
    output:
        **{name: directory(path) for name, path in MICLIP_ACTS.items()},
        probe="results/miclip/{model}/{dataset}/{site}/probe.npz",
        probe_sha256=sha256_record("results/miclip/{model}/{dataset}/{site}/probe.npz"),
    log:
        "logs/probe_miclip/{model}/{dataset}/{site}.log",
    benchmark:
        "results/benchmarks/probe_miclip/{model}/{dataset}/{site}.tsv"
    wildcard_constraints:
        site=name_pattern({site for _, site in CONFIG.plan.miclip_sites}),
        dataset=name_pattern([CONFIG.miclip.dataset]),
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("probe_miclip"),
        runtime=RESOURCES.runtime("probe_miclip"),
    params:
        model=model_params,
        model_config=model_config,
        reference=miclip_reference,
        reference_config=miclip_reference_config,
        holdout=CONFIG.miclip.holdout,
        seed=CONFIG.seed,
        batch_size=CONFIG.miclip.batch_size_eval,
        natural=CONFIG.miclip_natural_params(),
        device=CONFIG.extraction.device,
        code=script_code("probe_miclip.py"),
    script:
        "../scripts/probe_miclip.py"


rule train_miclip:
    input:
        probe="results/miclip/{model}/{dataset}/{site}/probe.npz",
        probe_sha256=sha256_record("results/miclip/{model}/{dataset}/{site}/probe.npz"),
        concepts=miclip_reference_text,
        concepts_sha256=sha256_record(miclip_reference_text),
    output:
        encoders="results/miclip/{model}/{dataset}/{site}/encoders.pt",
        encoders_sha256=sha256_record(
            "results/miclip/{model}/{dataset}/{site}/encoders.pt"
        ),
        log="results/miclip/{model}/{dataset}/{site}/training.tsv",
    log:
        "logs/train_miclip/{model}/{dataset}/{site}.log",
    benchmark:
        "results/benchmarks/train_miclip/{model}/{dataset}/{site}.tsv"
    wildcard_constraints:
        site=name_pattern({site for _, site in CONFIG.plan.miclip_sites}),
        dataset=name_pattern([CONFIG.miclip.dataset]),
    conda:
        ENV
    # 9 encoders of D x E weights: one thread (two threads of such small products are ~25x slower on a
    # busy 2-core machine: the second thread only waits).
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("train_miclip"),
        runtime=RESOURCES.runtime("train_miclip"),
    params:
        train=CONFIG.miclip.pick(
            "losses", "seeds", "steps", "batch_size", "lr", "temperature"
        ),
        code=script_code("train_miclip.py"),
    script:
        "../scripts/train_miclip.py"


rule plot_miclip_training:
    input:
        log="results/miclip/{model}/{dataset}/{site}/training.tsv",
    output:
        figure=reported(
            "results/miclip/{model}/{dataset}/{site}/training.png",
            "miclip_training.rst",
            "9 MiCLIP",
            "{model} at {site}",
        ),
    log:
        "logs/plot_miclip_training/{model}/{dataset}/{site}.log",
    wildcard_constraints:
        site=name_pattern({site for _, site in CONFIG.plan.miclip_sites}),
        dataset=name_pattern([CONFIG.miclip.dataset]),
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_miclip_training"),
        runtime=RESOURCES.runtime("plot_miclip_training"),
    params:
        label=miclip_label,
        code=script_code("plot_miclip_training.py"),
    script:
        "../scripts/plot_miclip_training.py"


rule evaluate_miclip:
    input:
        **MICLIP_ACTS,
        dataset_dir=DATA,
        checkpoint=checkpoint_input,
        probe="results/miclip/{model}/{dataset}/{site}/probe.npz",
        probe_sha256=sha256_record("results/miclip/{model}/{dataset}/{site}/probe.npz"),
        concepts=miclip_reference_text,
        concepts_sha256=sha256_record(miclip_reference_text),
        encoders="results/miclip/{model}/{dataset}/{site}/encoders.pt",
        encoders_sha256=sha256_record(
            "results/miclip/{model}/{dataset}/{site}/encoders.pt"
        ),
        sae=miclip_sae_input,
        sae_sha256=sha256_record(miclip_sae_input),
        # A natural-image dataset with classes: the target's zero-shot classifier (methods.md Sec. 9.8).
        classifier=CONFIG.miclip_classifier(),
        classifier_sha256=CONFIG.miclip_classifier(sha256=True),
    output:
        descriptions=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/descriptions.tsv",
            "miclip_descriptions.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        localisation=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/localisation.tsv",
            "miclip_localisation.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        interventions=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/interventions.tsv",
            "miclip_interventions.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        description_accuracy=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/description_accuracy.tsv",
            "miclip_description_accuracy.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        delta_acc=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/delta_acc.tsv",
            "miclip_delta_acc.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        ablation=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/ablation.tsv",
            "miclip_ablation.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
    log:
        "logs/evaluate_miclip/{model}/{dataset}/{site}/{kind}.log",
    benchmark:
        "results/benchmarks/evaluate_miclip/{model}/{dataset}/{site}/{kind}.tsv"
    wildcard_constraints:
        site=name_pattern({site for _, site in CONFIG.plan.miclip_sites}),
        dataset=name_pattern([CONFIG.miclip.dataset]),
        kind="neurons|sae",
    conda:
        ENV
    threads: 2
    resources:
        gpu=CONFIG.extraction.gpus,
        mem_mb=RESOURCES.mem_mb("evaluate_miclip"),
        runtime=RESOURCES.runtime("evaluate_miclip"),
    params:
        model=model_params,
        model_config=model_config,
        evaluation={
            **CONFIG.miclip.pick(
                "seeds", "tau", "interventions", "clip_dissect", "netdissect"
            ),
            "batch_size": CONFIG.miclip.batch_size_eval,
        },
        k_top=CONFIG.miclip.k_top,
        natural=CONFIG.miclip_natural_params(),
        device=CONFIG.extraction.device,
        code=script_code("evaluate_miclip.py"),
    script:
        "../scripts/evaluate_miclip.py"


rule plot_miclip:
    input:
        delta_acc="results/miclip/{model}/{dataset}/{site}/{kind}/delta_acc.tsv",
        description_accuracy="results/miclip/{model}/{dataset}/{site}/{kind}/description_accuracy.tsv",
    output:
        delta_figure=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/delta_acc.png",
            "miclip_delta_acc_figure.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
        description_figure=reported(
            "results/miclip/{model}/{dataset}/{site}/{kind}/descriptions.png",
            "miclip_descriptions_figure.rst",
            "9 MiCLIP",
            "{model} at {site}, {kind}",
        ),
    log:
        "logs/plot_miclip/{model}/{dataset}/{site}/{kind}.log",
    wildcard_constraints:
        site=name_pattern({site for _, site in CONFIG.plan.miclip_sites}),
        dataset=name_pattern([CONFIG.miclip.dataset]),
        kind="neurons|sae",
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=RESOURCES.mem_mb("plot_miclip"),
        runtime=RESOURCES.runtime("plot_miclip"),
    params:
        tau=CONFIG.miclip.tau,
        label=miclip_label,
        code=script_code("plot_miclip.py"),
    script:
        "../scripts/plot_miclip.py"
