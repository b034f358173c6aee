"""SimpleNN, the course's first CIFAR-10 network, exactly as in the course table.

    input 3×32×32
    conv 5×5, 8 filters, no padding (ReLU)   -> 8×28×28     608 params
    max pool 2×2 stride 2                     -> 8×14×14
    conv 3×3, 16 filters, no padding (ReLU)  -> 16×12×12  1,168 params
    max pool 2×2 stride 2                     -> 16×6×6
    flatten                                   -> 576
    FC 120 (ReLU)                                        69,240 params
    FC 84 (ReLU)                                         10,164 params
    FC 10                                                   850 params
                                                 total   82,030 (81,792 weights + 238 biases); 716,328 MACs

Options: batch norm after each convolution (the conv then has no bias), the activation by name, dropout before
each fully connected layer, and `width`, a multiplier of every layer's filters and neurons (Project 2 §1.4a: 2 gives
16/32 filters and 240/168 neurons). The defaults reproduce the table; initialisation is PyTorch's default.
"""

from __future__ import annotations

from torch import nn


from cnnlab.models.layers import (Network, Stack, check_activation, check_bool, check_io, check_positive, check_prob,
                                  conv_block,
                                  dropout as dropout_layers, feature_size, flat_features, make_activation)
from cnnlab.models.registry import register_model


@register_model("simplenn", "course SimpleNN: conv5-8, pool, conv3-16, pool, FC 120-84-10 (82,030 params)")
def simplenn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, activation: str = "relu",
             batch_norm: bool = False, dropout: float = 0.0, width: float = 1.0) -> Network:
    name = "simplenn"
    shape = check_io(name, num_classes, in_channels, input_size)
    check_activation(name, activation)
    check_bool(name, "batch_norm", batch_norm)
    p = check_prob(name, "dropout", dropout)
    check_positive(name, "width", width, 64, " (a multiplier of every layer's filters and neurons, 1 = the course "
                                             "table)")
    c1, c2, h1, h2 = (max(1, round(width * n)) for n in (8, 16, 120, 84))

    features = Stack()
    conv_block(features, in_channels, c1, 5, batch_norm=batch_norm, activation=activation)
    features.add("pool", nn.MaxPool2d(2, 2))
    conv_block(features, c1, c2, 3, batch_norm=batch_norm, activation=activation)
    features.add("pool", nn.MaxPool2d(2, 2))
    features = features.build()
    side = feature_size(name, features, input_size)

    head = Stack().add("flatten", nn.Flatten())
    for i, (n_in, n_out) in enumerate([(flat_features(c2, side), h1), (h1, h2), (h2, num_classes)]):
        head.add("drop", *dropout_layers(p))
        head.add("fc", nn.Linear(n_in, n_out))
        if i < 2:
            head.add("act", make_activation(activation))
    return Network(name, shape, num_classes, features, head.build())
