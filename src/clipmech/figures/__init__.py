"""Figures, matplotlib only: one module per figure family, so editing one figure reruns only the rule that draws it; :mod:`.style` sets the Agg backend once and holds what all figures share."""
