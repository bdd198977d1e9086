"""Causal tracing, activation patching, concept selectivity and interventions (methods.md Sec. 8)."""
