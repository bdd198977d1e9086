"""Stage entry points: one function per workflow rule, taking paths and config values.

Each script in ``workflow/scripts/`` is ``run(<stage>, snakemake)`` (:mod:`clipmech.runner`): a stage's
keyword names are its rule's input, output, param and wildcard names, so the scripts map nothing by hand.
Each stage lives in its own module so that a rule's code hash (:mod:`clipmech.codehash`) covers the
code that rule runs and nothing else.
"""
