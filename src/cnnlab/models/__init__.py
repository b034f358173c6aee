"""cnnlab's model zoo and architecture accounting. Knows nothing of training or the command line.

    from cnnlab.models import create_model, list_models, MODELS, model_info
    model = create_model("resnet20", num_classes=10, in_channels=3, input_size=32, shortcut="B")

Modules: layers (activations incl. Swish, the checked Network wrapper, shared builders), registry (MODELS,
create_model), simplenn, resnet (He et al. 2016 §4.2), vgg (Simonyan & Zisserman 2015), mlp (Srivastava et al. 2014),
small (LeNet-5, MiniGoogLeNet), reference (AlexNet, VGG19, Inception modules at 224), summary (per-layer table of
parameters, MACs and activations), calc (the course's computation questions with the working), sanity (initial loss
against ln(classes)).
"""

from cnnlab.models.registry import MODELS, create_model, list_models, model_info, register_model

# Importing the model modules fills MODELS (each constructor registers itself).
from cnnlab.models import fast, mlp, reference, resnet, simplenn, small, vgg  # noqa: E402,F401

__all__ = ["MODELS", "create_model", "list_models", "model_info", "register_model"]
