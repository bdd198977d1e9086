"""Datasets: the seeded Shapes synthesis and its distribution-shift splits (methods.md Sec. 1 and 5), the
dataset directory reader, readers of real datasets a user points at (ImageNet, class folders, image-caption
pairs, CIFAR-10 and PASCAL Context, as manifests in :mod:`.natural`), the loader that feeds manifest images to
a model in batches (:mod:`.loader`) and every dataset's concept matrix (:mod:`.concepts`, methods.md Sec. 1.1)."""
