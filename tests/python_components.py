"""Components written in plain Python, shared by the tests of Python-written parts."""
import numpy as np

import numrec


class PySigmoid(numrec.Activation):
    def forward(self, z):
        return (1 / (1 + np.exp(-z))).astype(z.dtype)

    def derivative(self, z, a):
        return a * (1 - a)


class PyMSE(numrec.Loss):
    def value(self, output, target):
        return float(np.sum((output - target) ** 2) / len(output))

    def gradient(self, output, target):
        return (2 * (output - target) / len(output)).astype(output.dtype)


class PyDense(numrec.Layer):
    """A fully connected layer in NumPy, with the conventions of ``Dense``."""

    def __init__(self, weights, bias):
        self.weights = np.array(weights)
        self.bias = np.array(bias)
        self.grad_weights = np.zeros_like(self.weights)
        self.grad_bias = np.zeros_like(self.bias)
        self.out_features, self.in_features = self.weights.shape
        self._x = None

    def forward(self, x):
        self._x = x
        return x @ self.weights.T + self.bias

    def backward(self, grad_output):
        self.grad_weights[...] = grad_output.T @ self._x
        self.grad_bias[...] = grad_output.sum(axis=0)
        return grad_output @ self.weights

    def parameters(self):
        return [self.weights, self.bias]

    def gradients(self):
        return [self.grad_weights, self.grad_bias]
