"""clipmech: mechanistic interpretability of CLIP-style vision encoders, as a Snakemake pipeline."""

__version__ = "0.1.0"
