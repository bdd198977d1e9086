"""Until branch ``sae`` (the model, ``clipmech.sae.model``) is merged, its interface comes from ``sae_stub``;
delete this file and ``sae_stub.py`` at the merge."""

import importlib.util
import sys

import sae_stub

if importlib.util.find_spec("clipmech.sae.model") is None:
    sys.modules["clipmech.sae.model"] = sae_stub
