"""A multilayer perceptron on flattened images, for the dropout experiments of Srivastava, Hinton et al. 2014,
"Dropout: A Simple Way to Prevent Neural Networks from Overfitting" (§6.1: input units kept with p = 0.8 and hidden
units with p = 0.5, i.e. dropout rates 0.2 and 0.5).

Default: two hidden layers of 1000 units with ReLU and no dropout; `input_dropout` and `dropout` set the two rates
separately. Works for CIFAR-10 (3×32×32 -> 3072 inputs) and Fashion-MNIST (1×28×28 -> 784 inputs).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from cnnlab.models.layers import (Network, Stack, as_int_tuple, check_activation, check_io, check_prob,
                                  dropout as dropout_layers, make_activation)
from cnnlab.models.registry import register_model


@register_model("mlp", "multilayer perceptron, hidden 1000-1000 (ReLU), separate input and hidden dropout")
def mlp(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, hidden: Sequence[int] = (1000, 1000),
        input_dropout: float = 0.0, dropout: float = 0.0, activation: str = "relu") -> Network:
    name = "mlp"
    shape = check_io(name, num_classes, in_channels, input_size)
    sizes = as_int_tuple(name, "hidden", hidden)
    p_in = check_prob(name, "input_dropout", input_dropout)
    p = check_prob(name, "dropout", dropout)
    check_activation(name, activation)

    # Flatten is the whole "feature extractor": summaries and filter plots then find no convolutions, as they should.
    features = Stack().add("flatten", nn.Flatten()).add("drop", *dropout_layers(p_in)).build()
    head, n_in = Stack(), in_channels * input_size * input_size
    for n_out in sizes:
        head.add("fc", nn.Linear(n_in, n_out)).add("act", make_activation(activation))
        head.add("drop", *dropout_layers(p))
        n_in = n_out
    head.add("fc", nn.Linear(n_in, num_classes))
    return Network(name, shape, num_classes, features, head.build())
