from clipmech.runner import run
from clipmech.stages.plot_tsne_shapes import plot_tsne_shapes

run(plot_tsne_shapes, snakemake)
