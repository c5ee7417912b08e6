"""Pickling and copying components: ``copy.deepcopy``, ``pickle`` and multiprocessing.

The compiled classes keep their state in C fields, which Python's default pickling cannot
see, so each abstract base's ``__reduce__`` calls :func:`reduce_component`:

- a built-in, or a component whose class has a ``get_config`` of its own, is rebuilt
  as ``cls(**component.get_config())`` (the documented meaning of ``get_config``), its
  parameters are copied in, and its instance ``__dict__`` (a Python subclass's
  attributes) is restored;
- a Python-written component that keeps its own ``get_config`` default is restored from
  its ``__dict__`` alone, without calling its constructor, as Python does for plain
  classes.

A layer's :attr:`~numrec.Layer.training` mode is kept, and a built layer is built again
for the same input shape (:meth:`~numrec.Layer.build`).

An optimizer's state (momentum, Adam's moments) belongs to the parameter arrays it was
prepared for, so a copy starts afresh, as after :meth:`~numrec.Optimizer.prepare` on new
parameters.
"""

__all__ = ["reduce_component"]


def reduce_component(component, base):
    """The ``__reduce__`` value of ``component``, whose abstract base class is ``base``."""
    cls = type(component)
    attributes = dict(getattr(component, "__dict__", None) or {})
    written_in_python = not cls.__module__.startswith("numrec._core.")
    training = getattr(component, "training", None)
    if written_in_python and cls.get_config is base.get_config:
        return _restore_attributes, (cls, attributes, training)
    parameters = component.parameters() if hasattr(component, "parameters") else []
    input_shape = getattr(component, "input_shape", None)
    return _rebuild, (cls, component.get_config(), [param.copy() for param in parameters],
                      attributes, training, input_shape)


def _rebuild(cls, config, parameters, attributes, training=None, input_shape=None):
    component = cls(**config)
    if input_shape is not None:
        component.build(input_shape)
    for target, value in zip(component.parameters() if parameters else (), parameters):
        target[...] = value
    _restore(component, attributes, training)
    return component


def _restore_attributes(cls, attributes, training=None):
    component = cls.__new__(cls)
    _restore(component, attributes, training)
    return component


def _restore(component, attributes, training):
    if attributes:
        component.__dict__.update(attributes)
    if training is not None:
        component.training = training
