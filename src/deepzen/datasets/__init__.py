"""Keras's ``keras.datasets``: ``load_data()`` for the datasets deepzen reads, in Keras's arrays.

The files come from ``$DEEPZEN_DATA`` (see ``deepzen.data.paths``), in their published formats; nothing else is
implied by the names: ``deepzen.datasets.mnist.load_data()`` returns what ``keras.datasets.mnist.load_data()``
returns. Datasets that deepzen cannot read here (CIFAR-10 needs its batches in ``$DEEPZEN_DATA/cifar10``) say
which files they need.
"""

from deepzen.datasets import cifar10, fashion_mnist, mnist

__all__ = ["cifar10", "fashion_mnist", "mnist"]
