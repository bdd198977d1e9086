"""Resumable, atomically published zarr stores, through xarray.

:mod:`.base` is the protocol both kinds share (provenance checked on resume, ``<store>.partial``,
progress file, publish by rename, open). Each kind has its format and readers in one module and its
extraction in another, so a rule that only reads a store does not depend on the models or the hooks:
:mod:`.activations` / :mod:`.activation_extraction` (hook sites of both towers; methods.md Secs. 2, 6)
and :mod:`.attnpool` / :mod:`.attnpool_extraction` (the CLIP-ResNet attention pool; methods.md Sec. 5).
"""
