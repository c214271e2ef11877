"""A thin neural-network layer over the fused kernels: H = f(XW + b) layer by layer,
backpropagation by hand (no autograd), parameters in one flat buffer.

    from fusedops.nn import MLP
    from fusedops.data import load_digits
    Xtr, Xte, ytr, yte = load_digits()
    model = MLP([64, 256, 256, 10], dropout=0.2, batchnorm=True, seed=0)
    history = model.fit(Xtr, ytr, epochs=30, batch_size=64, lr=2e-3, validation_split=0.1)
    model.score(Xte, yte)
"""
from .autoencoder import Autoencoder
from .activations import ACTIVATIONS, Identity, LeakyReLU, ReLU, Sigmoid, Tanh, make_activation
from .fused_layers import BatchNorm1d, Dropout
from .layers import Layer, Linear, Sequential
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .mlp import MLP, TASKS
from .models import Model
from .parameter import FlatParameters, Parameter
from .serialization import load, save
from .threads import limit_threads
from .training import History

__all__ = ["ACTIVATIONS", "Autoencoder", "BatchNorm1d", "BCEWithLogitsLoss", "CrossEntropyLoss",
           "Dropout", "FlatParameters", "History", "Identity", "Layer", "LeakyReLU", "Linear", "Loss", "MLP",
           "MSELoss", "Model", "Parameter", "ReLU", "Sequential", "Sigmoid", "Tanh", "TASKS", "load",
           "limit_threads", "make_activation", "save"]
