"""Saving and loading models (``.npz`` arrays plus a JSON architecture)."""


def load(path):
    """Load a model saved by :meth:`numrec.Sequential.save`."""
    raise NotImplementedError("model files are not supported yet")
