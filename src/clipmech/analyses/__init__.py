"""The shapes-paper track: neuron selectivity (Algorithm 1), superposition vs separability, the binding benchmark, Grad-CAM for text prompts, and embedding maps (t-SNE)."""
