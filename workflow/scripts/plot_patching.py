from clipmech.logs import to_file
from clipmech.stages.plot_patching import plot_patching

to_file(snakemake.log[0])
plot_patching(
    recovery_path=snakemake.input.recovery,
    circuit_path=snakemake.input.circuit,
    out=snakemake.output,
    threshold=snakemake.params.threshold,
    label=snakemake.params.label,
)
