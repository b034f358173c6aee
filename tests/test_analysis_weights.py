"""Weight histograms and sparsity, filters, feature maps and saliency, on real models (and real images where the
analysis looks at images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.analysis.weights import (default_layer, feature_maps, first_layer_filters, plot_histograms,
                                     weight_stats, weight_tensors)
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model


def test_sparsity_counts_weights_below_the_threshold_and_skips_biases():
    w = torch.tensor([[0.0, 1e-4, -5e-4, 0.2], [0.5, -0.3, 2e-3, 1e-5]])  # 4 of 8 below 1e-3
    state = {"fc.weight": w, "fc.bias": torch.zeros(2), "bn.running_mean": torch.zeros(2),
             "bn.num_batches_tracked": torch.tensor(3)}
    [st] = weight_stats({"run": state}, threshold=1e-3, bins=10)
    assert [s.layer for s in st.layers] == ["fc"]
    assert st.layers[0].sparsity == pytest.approx(0.5) and st.sparsity == pytest.approx(0.5)
    assert sum(st.layers[0].counts) == 8
    assert st.layers[0].max_abs == pytest.approx(0.5)


def test_two_runs_share_bins_per_layer():
    torch.manual_seed(0)
    a = {"conv.weight": torch.randn(4, 3, 3, 3) * 0.1}
    b = {"conv.weight": torch.randn(4, 3, 3, 3) * 2.0}
    sa, sb = weight_stats({"l1": a, "l2": b}, bins=20)
    assert sa.layers[0].edges == sb.layers[0].edges
    assert sa.layers[0].edges[-1] == pytest.approx(float(b["conv.weight"].abs().max()))
    assert sum(sa.layers[0].counts) == sum(sb.layers[0].counts) == 108
    axes = plot_histograms([sa, sb])
    assert axes[0][0].figure.legends, "one legend for the figure names the runs"


def test_a_state_without_weight_matrices_is_a_user_error():
    with pytest.raises(CnnlabError, match="no weight"):
        weight_tensors({"bias": torch.zeros(3)})


def test_first_layer_filters_of_simplenn_are_its_input_convolution():
    model = create_model("simplenn")
    grid = first_layer_filters(model.state_dict())
    assert grid.layer == "features.conv1" and grid.weights.shape == (8, 3, 5, 5)
    imgs = grid.images()
    assert imgs.shape == (8, 5, 5, 3) and imgs.min() >= 0 and imgs.max() <= 1
    assert np.allclose(imgs.reshape(8, -1).max(1), 1) and np.allclose(imgs.reshape(8, -1).min(1), 0)
    assert len(grid.rows()) == 8 * 3 * 5 * 5


def test_a_model_without_convolutions_has_no_filters():
    with pytest.raises(CnnlabError, match="no convolution"):
        first_layer_filters(create_model("mlp").state_dict())


def test_default_layer_skips_batch_norm_to_the_activation():
    assert default_layer(create_model("simplenn")) == "features.act1"
    assert default_layer(create_model("simplenn", batch_norm=True)) == "features.act1"


def test_feature_maps_shape_and_unknown_layer():
    model = create_model("simplenn")
    x = torch.randn(1, 3, 32, 32)
    fm = feature_maps(model, x)
    assert fm.maps.shape == (8, 28, 28) and fm.maps.min() >= 0  # after ReLU
    with pytest.raises(CnnlabError, match="features.conv1"):
        feature_maps(model, x, "features.nope")
    with pytest.raises(CnnlabError, match="not feature maps"):
        feature_maps(model, x, "classifier.fc1")
