"""TorchModuleWrapper: any ``torch.nn.Module`` as a deepzen layer (Keras 3's ``keras.layers.TorchModuleWrapper``).

A deepzen model takes torch modules as they are (``Sequential([nn.Linear(4, 8), ...])``, ``Model(module)``).
In the Functional API a layer is called on symbolic tensors, which torch's own modules cannot take; wrapped,
they can, and the wrapped module's parameters train with the model.

Example:
    >>> from torch import nn
    >>> from deepzen.layers import Input
    >>> from deepzen.models import Model
    >>> inputs = Input((4,))
    >>> outputs = TorchModuleWrapper(nn.Linear(4, 2))(inputs)
    >>> Model(inputs, outputs).output_shape
    (None, 2)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from deepzen.layers.base import Layer
from deepzen.serializable import config_value, value_from_config


class TorchModuleWrapper(Layer):
    """Calls ``module`` with the layer's arguments.

    Args:
        module: any ``torch.nn.Module``. A model file can rebuild it only if it is a deepzen layer or model
            (or a class registered with ``deepzen.register_serializable``); for torch's modules save the
            weights (``save_weights``) and rebuild the model in Python.

    Call arguments:
        whatever ``module.forward`` takes.
    """

    def __init__(self, module: nn.Module, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(module, nn.Module):
            raise TypeError(f"TorchModuleWrapper wraps a torch.nn.Module. Received: {type(module).__name__}")
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        if not hasattr(self.module, "get_config"):
            raise TypeError(f"Layer '{self.display_name}' wraps torch's {type(self.module).__name__}, which has no "
                            f"config, so a model file cannot rebuild it: save the weights with "
                            f"model.save_weights(path) and build the model in Python before load_weights")
        return {"module": config_value(self.module, f"{self.display_name}.module"), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TorchModuleWrapper":
        return cls(value_from_config(config["module"]), name=config.get("name"))
