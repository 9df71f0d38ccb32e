"""Keras's import path for callbacks: ``from deepzen.callbacks import EarlyStopping``."""

from deepzen.training.callbacks import (Callback, CallbackError, CSVLogger, EarlyStopping, GradientMonitor, History,
                                        LearningRateScheduler, ModelCheckpoint, OneCycleScheduler, ProgressBar,
                                        ReduceLROnPlateau, TerminateOnNaN, TimeBudget, WeightAverage)
from deepzen.training.tensorboard import TensorBoard

__all__ = ["Callback", "CallbackError", "CSVLogger", "EarlyStopping", "GradientMonitor", "History",
           "LearningRateScheduler", "ModelCheckpoint", "OneCycleScheduler", "ProgressBar", "ReduceLROnPlateau",
           "TensorBoard", "TerminateOnNaN", "TimeBudget", "WeightAverage"]
