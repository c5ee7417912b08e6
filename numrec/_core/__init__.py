"""Compiled building blocks of numrec (Cython).

Each concept has its own extension module: ``_layers`` (``Layer``, ``Dense``),
``_activations`` (``Activation``, ``LeakyReLU``, ``Sigmoid``), ``_losses`` (``Loss``, ``MSE``),
``_optimizers`` (``Optimizer``, ``SGD``) and ``_training`` (the fused training loop).
"""
