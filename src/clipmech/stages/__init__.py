"""Stage entry points: one function per workflow rule, taking paths and config values.

The scripts in ``workflow/scripts/`` only unpack the ``snakemake`` object and call one of these.
Each stage lives in its own module so that a rule's code hash (:mod:`clipmech.codehash`) covers the
code that rule runs and nothing else.
"""
