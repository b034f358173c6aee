"""Training: typed configs, optimizers, schedules, the trainer, checkpoints and run folders.

Built on cnnlab.data and cnnlab.models; knows nothing of the command line.
"""
