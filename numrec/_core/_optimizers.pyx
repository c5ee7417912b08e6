"""Optimizers: the abstract ``Optimizer`` and its compiled implementations."""
from cython cimport floating
from libc.math cimport pow
from libc.stdlib cimport malloc, free
cimport numpy as cnp

import numpy as np

from numrec._core import _kernels
from numrec._core._copying import reduce_component

from numrec._core._memory import aligned_zeros
from numrec._core._validation import check_finite_number, FLOAT_DTYPES

cnp.import_array()

cdef extern from "_steps.h" nogil:
    int nr_steps_available_level()
    void nr_adam_f32(int level, float* param, const float* grad, float* exp_avg,
                     float* exp_avg_sq, Py_ssize_t n, float shrink, float l2, float weight1,
                     float beta2, float weight2, float bias_correction2_sqrt, float eps,
                     float neg_step_size)
    void nr_adam_f64(int level, double* param, const double* grad, double* exp_avg,
                     double* exp_avg_sq, Py_ssize_t n, double shrink, double l2,
                     double weight1, double beta2, double weight2,
                     double bias_correction2_sqrt, double eps, double neg_step_size)
    void nr_sgd_f32(int level, float* param, const float* grad, float* velocity,
                    Py_ssize_t n, float lr, float momentum, float weight_decay, int nesterov)
    void nr_sgd_f64(int level, double* param, const double* grad, double* velocity,
                    Py_ssize_t n, double lr, double momentum, double weight_decay,
                    int nesterov)
    void nr_classic_momentum_f32(int level, float* param, const float* grad,
                                 float* velocity, Py_ssize_t n, float lr, float momentum,
                                 float weight_decay)
    void nr_classic_momentum_f64(int level, double* param, const double* grad,
                                 double* velocity, Py_ssize_t n, double lr, double momentum,
                                 double weight_decay)

# The level of the optimizers' steps, an index into _kernels.LEVELS; every level gives
# the same bits (see _steps.h), so it only sets the width of the vectors.
cdef int _step_available = nr_steps_available_level()
cdef int _step_level = _kernels.LEVELS.index(
    _kernels.default_level(_kernels.LEVELS[_step_available]))


def _step_kernel_levels():
    """The levels of the optimizers' steps that this processor runs, lowest first."""
    return list(_kernels.LEVELS[:_step_available + 1])


def _step_kernel_level(level=None):
    """The level of the optimizers' steps (SGD's, Adam's, AdamW's), ``"avx512"``,
    ``"avx2"`` or ``"portable"``; with ``level``, set it and return the previous one.
    ValueError for an unknown level or one the processor lacks.  ``_layers._kernel_level``
    sets it with the rest."""
    global _step_level
    previous = _kernels.LEVELS[_step_level]
    if level is not None:
        _step_level = _kernels.check_level(level, _kernels.LEVELS[_step_available])
    return previous


cdef class Optimizer:
    """Abstract optimizer: updates parameters in place from their gradients.

    ``step(parameters, gradients)`` receives two lists of the same length, in the model's
    order (for each :class:`~numrec.Dense`: ``weights`` then ``bias``), and must change the
    parameter arrays **in place**.  An optimizer with state (momentum, Adam's moments)
    keys it by position in these lists.  To write one in Python, subclass it and implement
    ``step``; inside ``fit``, the model's compiled parts then compute the gradients and
    the optimizer runs per batch.

    Compiled optimizers fill the kernel contract (``update_f32/f64`` on a range of a
    parameter, so that threads share the update) and declare it:

    ``kernel_dtypes``
        The dtypes whose update kernels the class implements; empty for the abstract
        class, which the compiled loop therefore never admits.
    ``state_per_parameter``
        Arrays of state kept per parameter (the shape of the parameter each), set by
        the constructor; :meth:`prepare` allocates them before training, zeroed.
    :meth:`folded_step`
        Whether the update is exactly ``param += s * grad`` with no state, which layers
        that can apply it inside their gradient product do.

    ``steps`` counts the updates made (one per batch), for bias corrections.
    """

    kernel_dtypes = ()

    def __cinit__(self, *args, **kwargs):
        if type(self) is Optimizer:
            raise TypeError("Optimizer is abstract: subclass it and implement step")
        self._state_data = NULL
        self._state = []

    def __dealloc__(self):
        free(self._state_data)

    def __reduce__(self):
        """For ``pickle`` and ``copy``: see :mod:`numrec._core._copying`."""
        return reduce_component(self, Optimizer)

    def step(self, parameters, gradients):
        """Update every array in ``parameters`` in place from ``gradients``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step(parameters, gradients)")

    def prepare(self, parameters):
        """Allocate the state for ``parameters`` (the model's, in its order).

        Called by :meth:`~numrec.Sequential.fit` before training and by :meth:`step`.
        State already allocated for the same parameter arrays is kept, so a second
        ``fit`` of the same model continues where the first stopped (as a PyTorch
        optimizer does); other parameters (another model) start afresh, with ``steps``
        at 0.
        """
        signature = tuple((param.__array_interface__["data"][0], param.shape, param.dtype.str)
                          for param in parameters)
        if signature == self._prepared_for:
            return
        state = [[aligned_zeros(param.shape, param.dtype)
                  for _ in range(self.state_per_parameter)] for param in parameters]
        cdef Py_ssize_t count = len(state) * self.state_per_parameter
        cdef void** data = <void**>malloc(max(count, 1) * sizeof(void*))
        if data == NULL:
            raise MemoryError()
        for slot, arrays in enumerate(state):
            for k, array in enumerate(arrays):
                data[slot * self.state_per_parameter + k] = cnp.PyArray_DATA(array)
        free(self._state_data)
        self._state_data = data
        self._state = state
        self._n_slots = len(state)
        self._prepared_for = signature
        self.steps = 0

    def state(self):
        """The state arrays, one list per parameter (empty lists for a stateless one)."""
        return [list(arrays) for arrays in self._state]

    def folded_step(self):
        """``s`` if every update is exactly ``param += s * grad`` with no state, else None.

        The compiled loop then lets layers that declare the ``"folded_sgd"`` capability
        apply the step inside their gradient product (one pass over the weights instead
        of three).  The abstract optimizer never folds.
        """
        return None

    def get_config(self):
        """Return the constructor arguments as a JSON-serialisable dict."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({args})"

    cdef void advance(self) noexcept nogil:
        self.steps += 1

    # The abstract kernels do nothing: the compiled loop never calls them, because it
    # admits only classes that declare their kernels (kernel_dtypes).

    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        pass

    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        pass

    def _run(self, floating[::1] param, floating[::1] grad, Py_ssize_t slot):
        """One update of the whole parameter ``slot`` through the kernels."""
        cdef Py_ssize_t n = param.shape[0]
        if grad.shape[0] != n:
            raise ValueError("a parameter and its gradient must have the same size")
        if self.state_per_parameter and (not 0 <= slot < self._n_slots
                                         or self._state[slot][0].size != n):
            raise ValueError(f"slot {slot} has no state of {n} values: call prepare() first")
        if n == 0:
            return
        with nogil:
            if floating is float:
                self.update_f32(slot, &param[0], &grad[0], 0, n)
            else:
                self.update_f64(slot, &param[0], &grad[0], 0, n)

    def _check_prepared(self, Py_ssize_t slot, param):
        """Raise ValueError unless :meth:`prepare` has allocated the state of ``param``
        as parameter ``slot`` (the compiled loop's kernels trust it)."""
        if self.state_per_parameter == 0:
            return
        if not 0 <= slot < self._n_slots or any(
                state.shape != param.shape or state.dtype != param.dtype
                for state in self._state[slot]):
            raise ValueError(f"{type(self).__name__} has no state for parameter {slot} of "
                             f"shape {param.shape}: call prepare(model.parameters()) first")

    def _advance(self):
        """Count one step (the segmented loop's call, once per batch)."""
        self.advance()

    def _update(self, Py_ssize_t slot, param, grad):
        """The update of parameter ``slot`` alone (prepared already), in place."""
        if not param.flags.c_contiguous:
            raise ValueError(f"parameter {slot} must be C-contiguous to be updated in place")
        self._run(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1), slot)

    def _compiled_step(self, parameters, gradients):
        """``step`` for compiled subclasses: prepare, count the step, run the kernels."""
        parameters, gradients = _check_pairs(parameters, gradients)
        self.prepare(parameters)
        self.advance()
        for slot, (param, grad) in enumerate(zip(parameters, gradients)):
            self._run(param.reshape(-1), grad.reshape(-1), slot)


def _check_lr(value):
    return check_finite_number(value, "lr", positive=True)


def _check_fraction(value, name):
    """A momentum or a beta: a number in [0, 1)."""
    value = check_finite_number(value, name, minimum=0.0)
    if value >= 1:
        raise ValueError(f"{name} must be below 1, got {value!r}")
    return value


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_pairs(parameters, gradients):
    parameters, gradients = list(parameters), list(gradients)
    if len(parameters) != len(gradients):
        raise ValueError(
            f"parameters and gradients must have the same length, "
            f"got {len(parameters)} and {len(gradients)}"
        )
    for index, (param, grad) in enumerate(zip(parameters, gradients)):
        if not isinstance(param, np.ndarray) or not isinstance(grad, np.ndarray):
            raise TypeError(f"parameters[{index}] and gradients[{index}] must be numpy arrays")
        if param.dtype not in FLOAT_DTYPES or grad.dtype != param.dtype:
            raise TypeError(
                f"parameters[{index}] and gradients[{index}] must share a float32 or float64 "
                f"dtype, got {param.dtype} and {grad.dtype}"
            )
        if param.shape != grad.shape:
            raise ValueError(
                f"gradients[{index}] must have shape {param.shape}, got {grad.shape}"
            )
        if not (param.flags.c_contiguous and param.flags.writeable):
            raise ValueError(f"parameters[{index}] must be a writeable C-contiguous array")
    return parameters, [np.ascontiguousarray(grad) for grad in gradients]


cdef class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional momentum and weight decay.

    For a parameter :math:`\theta` with gradient :math:`g`, at step :math:`t`
    (PyTorch's ``torch.optim.SGD`` with ``dampening=0``, the same formulas and order):

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        v_t &= \mu v_{t-1} + d_t \qquad (v_0 = 0, \text{ so } v_1 = d_1) \\
        \theta_t &= \theta_{t-1} - \eta \, u_t, \qquad
        u_t = \begin{cases} d_t + \mu v_t & \text{nesterov} \\ v_t & \text{otherwise}
        \end{cases}

    With ``momentum=0`` this is plain SGD, :math:`\theta \leftarrow \theta - \eta g`,
    which the compiled loop folds into the layers' gradient products.

    ``classic=True`` is the classical momentum of the reference network's code (its
    :math:`\mu` is 0.99), of Sutskever et al. (2013) and of Keras's ``SGD``, where the
    velocity carries the learning rate:

    .. math::

        d_t &= g_t + \lambda \theta_{t-1} \\
        v_t &= \mu v_{t-1} + \eta \, d_t \qquad (v_0 = 0) \\
        \theta_t &= \theta_{t-1} - v_t

    For a constant learning rate both give the same parameters (up to rounding): the
    classic :math:`v` is :math:`\eta` times PyTorch's.  They differ when ``lr`` changes
    between calls of ``fit``: the classic velocity keeps the steps taken at the old rate,
    PyTorch's applies the new rate to the whole velocity.  PyTorch: ``torch.optim.SGD``
    (``lr`` :math:`\eta`, ``momentum`` :math:`\mu`, ``dampening=0``) for the default;
    the classic form has no PyTorch class of its own.

    Parameters
    ----------
    lr : float, default 0.5
        Learning rate :math:`\eta`, positive.  With the quadratic cost and a sigmoid
        output, rates of about 1 and above tend to diverge.  Writable (a schedule:
        ``optimizer.lr = 0.1``, or :class:`numrec.callbacks.LearningRateScheduler`);
        the compiled loop reads plain SGD's rate at the start of every epoch, the other
        forms' at every batch.
    momentum : float, default 0
        :math:`\mu`, in [0, 1).
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0``; not with ``classic``).
    weight_decay : float, default 0
        :math:`\lambda \ge 0`, L2 penalty added to the gradient.
    classic : bool, default False
        The classical momentum above (needs ``momentum > 0``).  The state (``state()``)
        is then the classic velocity :math:`v`.
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, lr=0.5, momentum=0.0, *, nesterov=False, weight_decay=0.0,
                 classic=False):
        self._lr = _check_lr(lr)
        self.momentum = _check_fraction(momentum, "momentum")
        _check_bool(nesterov, "nesterov")
        _check_bool(classic, "classic")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum above 0")
        if classic and self.momentum == 0:
            raise ValueError("classic=True needs a momentum above 0")
        if classic and nesterov:
            raise ValueError("classic=True and nesterov=True cannot be combined")
        self.nesterov = nesterov
        self.classic = classic
        self.weight_decay = check_finite_number(weight_decay, "weight_decay", minimum=0.0)
        self.state_per_parameter = 1 if self.momentum > 0 else 0

    @property
    def lr(self):
        """The learning rate; assign a positive finite number to change it."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_lr(value)

    def get_config(self):
        config = {"lr": self._lr}
        if self.momentum:
            config.update(momentum=self.momentum, nesterov=bool(self.nesterov))
        if self.weight_decay:
            config["weight_decay"] = self.weight_decay
        if self.classic:
            config["classic"] = True
        return config

    def folded_step(self):
        """``-lr`` for plain SGD (no momentum, no weight decay), else None."""
        if self.momentum == 0 and self.weight_decay == 0:
            return -self._lr
        return None

    def step(self, parameters, gradients):
        """Apply one step (see the formulas above) to each parameter in place."""
        self._compiled_step(parameters, gradients)

    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        cdef float* velocity = NULL
        if self.state_per_parameter:
            velocity = <float*>self._state_data[slot] + begin
        if self.classic:
            nr_classic_momentum_f32(_step_level, param + begin, grad + begin, velocity,
                                    end - begin, <float>self._lr, <float>self.momentum,
                                    <float>self.weight_decay)
            return
        nr_sgd_f32(_step_level, param + begin, grad + begin, velocity, end - begin,
                   <float>self._lr, <float>self.momentum, <float>self.weight_decay,
                   self.nesterov)

    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        cdef double* velocity = NULL
        if self.state_per_parameter:
            velocity = <double*>self._state_data[slot] + begin
        if self.classic:
            nr_classic_momentum_f64(_step_level, param + begin, grad + begin, velocity,
                                    end - begin, self._lr, self.momentum, self.weight_decay)
            return
        nr_sgd_f64(_step_level, param + begin, grad + begin, velocity, end - begin,
                   self._lr, self.momentum, self.weight_decay, self.nesterov)


cdef class Adam(Optimizer):
    r"""Adam: steps scaled by running averages of the gradient and of its square.

    For a parameter :math:`\theta` with gradient :math:`g`, at step :math:`t = 1, 2, \dots`
    (``steps``; PyTorch's ``torch.optim.Adam`` without ``amsgrad``, its formulas in the
    order of its single-tensor implementation):

    .. math::

        g_t &\leftarrow g_t + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \qquad (m_0 = v_0 = 0) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    that is :math:`\theta \leftarrow \theta - \eta \hat m / (\sqrt{\hat v} + \epsilon)`
    with the bias-corrected moments :math:`\hat m = m_t / (1 - \beta_1^t)` and
    :math:`\hat v = v_t / (1 - \beta_2^t)`.  As in PyTorch, :math:`m` is updated as
    ``m + (1 - beta1) * (g - m)`` (``torch.lerp``; ``g - beta1 * (g - m)`` when
    ``beta1 <= 0.5``).  The weight decay :math:`\lambda` is an L2 penalty added to the
    gradient, which the moments then rescale; :class:`AdamW` decouples it.

    The state of each parameter (``state()``) is ``[m, v]``, of the parameter's shape;
    ``steps`` is :math:`t`, shared by all parameters.  The compiled loop runs the update
    on each thread's share of a parameter.  PyTorch's ``amsgrad`` and ``maximize``
    options are not implemented.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta`, positive.  Writable between calls of ``fit`` (a
        schedule: ``optimizer.lr = 1e-4``); the next step uses the new rate.
    betas : pair of float, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon > 0`, added to the denominator.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`, L2 penalty added to the gradient.
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self._lr = _check_lr(lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") \
                or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_fraction(betas[0], "betas[0]")
        self.beta2 = _check_fraction(betas[1], "betas[1]")
        self.eps = check_finite_number(eps, "eps", positive=True)
        self.weight_decay = check_finite_number(weight_decay, "weight_decay", minimum=0.0)
        self._decoupled = False
        self.state_per_parameter = 2
        self._set_step_scalars()

    @property
    def lr(self):
        """The learning rate; assign a positive finite number to change it."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_lr(value)
        self._set_step_scalars()

    @property
    def betas(self):
        """``(beta1, beta2)``, as given to the constructor."""
        return (self.beta1, self.beta2)

    def get_config(self):
        return {"lr": self._lr, "betas": [self.beta1, self.beta2], "eps": self.eps,
                "weight_decay": self.weight_decay}

    def __repr__(self):
        return (f"{type(self).__name__}(lr={self._lr!r}, betas={self.betas!r}, "
                f"eps={self.eps!r}, weight_decay={self.weight_decay!r})")

    def step(self, parameters, gradients):
        """Apply one step (see the formulas above) to each parameter in place."""
        self._compiled_step(parameters, gradients)

    def prepare(self, parameters):
        Optimizer.prepare(self, parameters)
        self._set_step_scalars()

    cdef void _set_step_scalars(self) noexcept nogil:
        # The scalars of step t = steps, computed as PyTorch computes them in Python
        # floats: bias_correction2 ** 0.5 is pow(), as Python's float ** does.
        cdef double t = <double>self.steps
        cdef double bias_correction1 = 1.0 - pow(self.beta1, t)
        cdef double bias_correction2 = 1.0 - pow(self.beta2, t)
        if self.steps == 0:  # before the first step: nothing to correct, never used
            bias_correction1 = bias_correction2 = 1.0
        self._neg_step_size = -(self._lr / bias_correction1)
        self._bias_correction2_sqrt = pow(bias_correction2, 0.5)
        if self._decoupled:
            self._shrink = 1.0 - self._lr * self.weight_decay
            self._l2 = 0.0
        else:
            self._shrink = 1.0
            self._l2 = self.weight_decay

    cdef void advance(self) noexcept nogil:
        self.steps += 1
        self._set_step_scalars()

    cdef void update_f32(self, Py_ssize_t slot, float* param, const float* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        nr_adam_f32(_step_level, param + begin, grad + begin,
                    <float*>self._state_data[2 * slot] + begin,
                    <float*>self._state_data[2 * slot + 1] + begin, end - begin,
                    <float>self._shrink, <float>self._l2, <float>(1.0 - self.beta1),
                    <float>self.beta2, <float>(1.0 - self.beta2),
                    <float>self._bias_correction2_sqrt, <float>self.eps,
                    <float>self._neg_step_size)

    cdef void update_f64(self, Py_ssize_t slot, double* param, const double* grad,
                         Py_ssize_t begin, Py_ssize_t end) noexcept nogil:
        nr_adam_f64(_step_level, param + begin, grad + begin,
                    <double*>self._state_data[2 * slot] + begin,
                    <double*>self._state_data[2 * slot + 1] + begin, end - begin,
                    self._shrink, self._l2, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2,
                    self._bias_correction2_sqrt, self.eps, self._neg_step_size)


cdef class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter).

    The step of :class:`Adam` without its L2 term, after shrinking the parameter
    (PyTorch's ``torch.optim.AdamW``, which is ``torch.optim.Adam`` with
    ``decoupled_weight_decay=True``):

    .. math::

        \theta_{t-1} &\leftarrow (1 - \eta \lambda) \, \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    The decay therefore does not pass through the moments: every weight shrinks by the
    same factor :math:`1 - \eta \lambda` per step.  State, ``steps`` and the compiled
    loop as for :class:`Adam`; ``amsgrad`` is not implemented.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta`, positive; writable between calls of ``fit``.
    betas : pair of float, default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon > 0`, added to the denominator.
    weight_decay : float, default 0.01
        :math:`\lambda \ge 0`, the decoupled decay.
    """

    kernel_dtypes = ("float32", "float64")

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        Adam.__init__(self, lr, betas, eps, weight_decay)
        self._decoupled = True
        self._set_step_scalars()
