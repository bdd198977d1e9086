"""Datasets: the seeded Shapes synthesis and its distribution-shift splits (methods.md Sec. 1 and 5), the
dataset directory reader, readers of real datasets a user points at (CIFAR-10; ImageNet, class folders and
image-caption pairs as manifests in :mod:`.natural`; PASCAL Context lives with its segmentation protocol in
:mod:`clipmech.decomposition.segmentation`), the loader that feeds manifest images to a model in batches
(:mod:`.loader`) and every dataset's concept matrix (:mod:`.concepts`, methods.md Sec. 1.1)."""
