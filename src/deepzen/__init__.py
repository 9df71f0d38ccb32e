"""deepzen: the classic deep-learning curriculum behind one small Keras-style API, on PyTorch."""
__version__ = "0.1.0"
