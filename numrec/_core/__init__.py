"""Compiled building blocks of numrec (Cython).

Each concept has its own extension module: ``_layers`` (``Layer``, ``Dense``),
``_activations`` (``Activation``, ``LeakyReLU``, ``ReLU``, ``Sigmoid``), ``_losses``
(``Loss``, ``MSE``), ``_optimizers`` (``Optimizer``, ``SGD``) and ``_training`` (the
compiled training loop).  docs/architecture.rst describes the kernel contract between them.
"""
