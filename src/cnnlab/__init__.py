"""cnnlab: construct, train, tune and analyse convolutional image classifiers on CIFAR-10 and Fashion-MNIST.

Layout (imports flow downwards only):
    data/        datasets, caches, batched tensor augmentation, the loader   (knows nothing of training)
    models/      model registry and accounting (params, MACs, activations)   (knows nothing of training)
    training/    configs, optimizers, schedules, trainer, checkpoints, run folders
    experiments/ sweeps, results store, reports                              (built on training)
    analysis/    range tests, loss landscapes, smoothness, weights/filters   (built on training)
    cli/         the `cnnlab` command: argument parsing and wiring only
"""

__version__ = "0.1.0"

from cnnlab.errors import CnnlabError  # noqa: F401  (re-exported: the one user-facing error type)
