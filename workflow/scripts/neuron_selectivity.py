from clipmech.runner import run
from clipmech.stages.neuron_selectivity import neuron_selectivity

run(neuron_selectivity, snakemake)
