"""Analyses of training: the questions asked *about* a model rather than by training it.

- `range_tests`: learning-rate range test, continuous (Smith 2017, "Cyclical Learning Rates for Training Neural
  Networks", §3.3) and discrete (k candidate rates, a few epochs each); batch-size range test (Smith et al. 2018,
  "Don't Decay the Learning Rate, Increase the Batch Size") with a rule proposing bounds for a cyclical batch size.
- `landscape`: loss bands across learning rates and filter-normalised random-direction landscapes (Santurkar et al.
  2018, "How Does Batch Normalization Help Optimization?", Fig. 4; Li et al. 2018, "Visualizing the Loss Landscape of
  Neural Nets", §4).
- `smoothness`: gradient predictiveness and effective beta-smoothness along the gradient (Santurkar et al. 2018, §3.1).
- `weights`: weight histograms and sparsity, first-layer filters, feature maps, saliency (Simonyan et al. 2014,
  "Deep Inside Convolutional Networks").

Support: `common` (driving and restoring a Trainer, CSV/PNG output), `samples` (fixed, class-balanced image subsets).

Every analysis returns its numbers (a dataclass with `rows()` for CSV) and draws on an optional matplotlib axis;
the CLI (`cnnlab.cli.analysis_cmd`) writes a PNG and a CSV of the same numbers. Training loops are the Trainer's own
(`common.run_steps` drives `Trainer.steps`, the step generator `train_one_epoch` is built on), so an analysis
trains exactly as `cnnlab train` does.
"""
