"""The four source papers' reported numbers and the tables that set ours beside them (methods.md Sec. 11):
:mod:`.numbers` holds the quoted numbers, :mod:`.sources` names the result tables each paper's comparison
reads (standard library only: the Snakefile imports it), :mod:`.compare` builds the comparison tables."""
