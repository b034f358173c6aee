"""cnnlab.data: datasets (CIFAR-10, Fashion-MNIST, image folders), decode caches, batched augmentation, the loader.

Knows nothing of training or the command line. Entry points: `load_dataset(name, root=..., val_size=..., seed=...)`
returns a `Dataset` of uint8 `Split`s; `cnnlab.data.loader.BatchLoader` turns a split into augmented, normalised
batches on the device; `cnnlab.data.augment.build_augmentation` builds the transforms by name.
"""

from cnnlab.data.core import Dataset, Split
from cnnlab.data.datasets import DATASETS, list_datasets, load_dataset

__all__ = ["DATASETS", "Dataset", "Split", "list_datasets", "load_dataset"]
