/* pyweaver._runtime._localcall: the colocated stub method without a Python frame.

A local stub method must see each call's outcome (the method's call and error counts
are exact, a failing call is logged), so in pure Python it is an ``async def`` around
``await impl.method(...)``: a second coroutine frame, which alone doubles the cost of
the call (bare wrapper ~220 ns against ~110 ns for a plain await on the benchmark
machine). This module does the same bookkeeping in C: calling a LocalMethod calls the
implementation's bound method and wraps the coroutine it returns in a LocalCall, an
awaitable that forwards send/throw/close to it and reports an ``Exception`` escaping
it. No frame is made, and the call costs ~1.6-1.8x a plain await (benchmarks/run.py
local; the untimed path alone ~1.5x).

The sampling protocol is the pure-Python stub's (pyweaver/_runtime/_stubs.py and
MethodMetrics in _metrics.py): while the method's ``countdown`` is above zero a call
only decrements it; at zero the call is timed (two clock reads and one
``record(latency_ns, False)``) and resets the countdown. With tracing on, the
countdown stays at zero and every call goes to ``traced``, the pure-Python stub
method, which makes its span. CallCounter is MethodMetrics' base class, so the
countdown is one C field that both this module and Python read and write.

Optional: pyweaver runs the same stubs in pure Python when this module is not built
(no C compiler at install, or PYWEAVER_NO_SPEEDUPS=1), see _speedups.py.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

/* ------------------------------------------------------------------ CallCounter */

typedef struct {
    PyObject_HEAD
    Py_ssize_t countdown;
    Py_ssize_t countdown_resets;
    Py_ssize_t abandoned; /* counted down, then never awaited */
} CallCounter;

static PyMemberDef CallCounter_members[] = {
    {"countdown", T_PYSSIZET, offsetof(CallCounter, countdown), 0,
     "Calls left before the next timed one (see MethodMetrics)."},
    {"countdown_resets", T_PYSSIZET, offsetof(CallCounter, countdown_resets), 0,
     "Times the countdown was reset by a timed call."},
    {"abandoned", T_PYSSIZET, offsetof(CallCounter, abandoned), 0,
     "Calls counted down but never awaited (so not calls)."},
    {NULL},
};

static PyTypeObject CallCounter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyweaver._runtime._localcall.CallCounter",
    .tp_doc = "The countdown of a sampling stub, shared by C and Python.",
    .tp_basicsize = sizeof(CallCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_members = CallCounter_members,
};

/* ------------------------------------------------------------------ LocalMethod */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *counter;  /* a CallCounter */
    PyObject *bound;    /* the implementation's bound method (first a builder) */
    PyObject *traced;   /* the pure-Python stub method: calls while tracing is on */
    PyObject *on_error; /* on_error(exc): count and log a failed call */
    PyObject *record;   /* record(latency_ns, False): a timed call's latency */
    PyObject *tracing;  /* its ``on`` says whether tracing is on (None: never) */
    Py_ssize_t reset_to; /* the countdown after a timed call: sample_every - 1 */
    PyObject *qualname;
    PyObject *dict; /* __name__, __code__, __signature__, ...: see _stubs.py */
} LocalMethod;

static PyTypeObject LocalMethod_Type;
static PyTypeObject LocalCall_Type;
static PyObject *on_name; /* "on", interned once */

/* ------------------------------------------------------------------ LocalCall */

typedef struct {
    PyObject_HEAD
    PyObject *inner;   /* the implementation's coroutine */
    PyObject *method;  /* the LocalMethod that made this call */
    int started;       /* sent into: the implementation ran */
    int finished;      /* inner returned or raised: report nothing more */
    int timed;         /* the sampled call: record its latency when it ends */
    long long start;   /* perf counter, ns, when a timed call was made */
} LocalCall;

static long long
perf_counter_ns(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t now;
    (void)PyTime_PerfCounterRaw(&now);
    return (long long)now;
#else
    return (long long)_PyTime_GetPerfCounter();
#endif
}

/* Only after the garbage collector cleared a cycle it was part of. */
static PySendResult
cleared(void)
{
    PyErr_SetString(PyExc_RuntimeError, "this pyweaver local call was cleared");
    return PYGEN_ERROR;
}

static void
call_reporting(PyObject *function, PyObject *result)
{
    if (result == NULL) {
        PyErr_WriteUnraisable(function);
    }
    else {
        Py_DECREF(result);
    }
}

/* The call ended: returned (raised == 0), or raised the current error. A timed call
   records its latency; an Exception (not a BaseException such as a cancellation)
   goes to on_error. The error stays set. */
static void
finish(LocalCall *self, int raised)
{
    self->finished = 1;
    int failed = raised && PyErr_ExceptionMatches(PyExc_Exception);
    if (!self->timed && !failed) {
        return;
    }
    LocalMethod *method = (LocalMethod *)self->method;
    if (method->record == NULL) { /* cleared */
        return;
    }
    long long latency = perf_counter_ns() - self->start;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = raised ? PyErr_GetRaisedException() : NULL;
#else
    PyObject *type = NULL, *exc = NULL, *traceback = NULL;
    if (raised) {
        PyErr_Fetch(&type, &exc, &traceback);
        PyErr_NormalizeException(&type, &exc, &traceback);
        if (traceback != NULL) {
            PyException_SetTraceback(exc, traceback);
        }
    }
#endif
    if (self->timed) {
        PyObject *ns = PyLong_FromLongLong(latency < 0 ? 0 : latency);
        if (ns == NULL) {
            PyErr_WriteUnraisable(method->record);
        }
        else {
            PyObject *args[2] = {ns, Py_False};
            call_reporting(method->record, PyObject_Vectorcall(method->record, args, 2, NULL));
            Py_DECREF(ns);
        }
    }
    if (failed) {
        call_reporting(method->on_error, PyObject_CallOneArg(method->on_error, exc));
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (raised) {
        PyErr_SetRaisedException(exc);
    }
#else
    if (raised) {
        PyErr_Restore(type, exc, traceback);
    }
#endif
}

static PySendResult
LocalCall_am_send(PyObject *op, PyObject *arg, PyObject **result)
{
    LocalCall *self = (LocalCall *)op;
    if (self->inner == NULL) {
        *result = NULL;
        return cleared();
    }
    self->started = 1;
    PySendResult status = PyIter_Send(self->inner, arg, result);
    if (status != PYGEN_NEXT && !self->finished) {
        finish(self, status == PYGEN_ERROR);
    }
    return status;
}

/* A coroutine's return value becomes StopIteration(value) outside am_send. */
static PyObject *
stop_iteration(PySendResult status, PyObject *result)
{
    if (status != PYGEN_RETURN) {
        return result; /* a yielded value, or NULL with the error set */
    }
    if (result == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    else {
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
    }
    Py_DECREF(result);
    return NULL;
}

static PyObject *
LocalCall_iternext(PyObject *op)
{
    PyObject *result;
    PySendResult status = LocalCall_am_send(op, Py_None, &result);
    return stop_iteration(status, result);
}

static PyObject *
LocalCall_send(PyObject *op, PyObject *arg)
{
    PyObject *result;
    PySendResult status = LocalCall_am_send(op, arg, &result);
    return stop_iteration(status, result);
}

static PyObject *
LocalCall_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    LocalCall *self = (LocalCall *)op;
    if (self->inner == NULL) {
        cleared();
        return NULL;
    }
    PyObject *throw = PyObject_GetAttrString(self->inner, "throw");
    if (throw == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(throw, args, (size_t)nargs, NULL);
    Py_DECREF(throw);
    if (result == NULL && !self->finished) {
        if (self->started) { /* StopIteration is a return */
            finish(self, !PyErr_ExceptionMatches(PyExc_StopIteration));
        }
        else { /* thrown in before it started: it never ran (see dealloc) */
            self->finished = 1;
        }
    }
    return result;
}

static PyObject *
LocalCall_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    LocalCall *self = (LocalCall *)op;
    if (self->inner == NULL) {
        Py_RETURN_NONE;
    }
    if (!self->finished) {
        if (self->started) { /* closed while suspended: it ends here */
            finish(self, 0);
        }
        self->finished = 1;
    }
    return PyObject_CallMethod(self->inner, "close", NULL);
}

static PyObject *
LocalCall_await(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
LocalCall_repr(PyObject *op)
{
    LocalCall *self = (LocalCall *)op;
    if (self->method == NULL) {
        return PyUnicode_FromString("<pyweaver local call (cleared)>");
    }
    return PyUnicode_FromFormat("<pyweaver local call %S>",
                                ((LocalMethod *)self->method)->qualname);
}

static int
LocalCall_traverse(PyObject *op, visitproc visit, void *arg)
{
    LocalCall *self = (LocalCall *)op;
    Py_VISIT(self->inner);
    Py_VISIT(self->method);
    return 0;
}

static int
LocalCall_clear(PyObject *op)
{
    LocalCall *self = (LocalCall *)op;
    Py_CLEAR(self->inner);
    Py_CLEAR(self->method);
    return 0;
}

static void
LocalCall_dealloc(PyObject *op)
{
    LocalCall *self = (LocalCall *)op;
    PyObject_GC_UnTrack(op);
    if (!self->started && !self->timed && self->method != NULL) {
        /* Never awaited: the implementation never ran, so this was not a call.
           Counting it as abandoned keeps the method's call count exact (the
           pure-Python stub counts inside its coroutine, which never ran either). */
        CallCounter *counter = (CallCounter *)((LocalMethod *)self->method)->counter;
        if (counter != NULL) {
            counter->abandoned++;
        }
    }
    LocalCall_clear(op);
    PyObject_GC_Del(op);
}

static PyMethodDef LocalCall_methods[] = {
    {"send", (PyCFunction)LocalCall_send, METH_O, "Send a value into the call."},
    {"throw", (PyCFunction)(void (*)(void))LocalCall_throw, METH_FASTCALL,
     "Raise an exception inside the call."},
    {"close", LocalCall_close, METH_NOARGS, "Close the call's coroutine."},
    {NULL},
};

static PyAsyncMethods LocalCall_async = {
    .am_await = LocalCall_await,
    .am_send = LocalCall_am_send,
};

static PyTypeObject LocalCall_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyweaver._runtime._localcall.LocalCall",
    .tp_doc = "One call of a LocalMethod: await it once.",
    .tp_basicsize = sizeof(LocalCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = LocalCall_dealloc,
    .tp_traverse = LocalCall_traverse,
    .tp_clear = LocalCall_clear,
    .tp_repr = LocalCall_repr,
    .tp_as_async = &LocalCall_async,
    .tp_iternext = LocalCall_iternext,
    .tp_methods = LocalCall_methods,
};

/* ------------------------------------------------------------------ LocalMethod */

static PyObject *
LocalMethod_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                       PyObject *kwnames)
{
    LocalMethod *self = (LocalMethod *)op;
    CallCounter *counter = (CallCounter *)self->counter;
    if (counter == NULL) {
        cleared();
        return NULL;
    }
    Py_ssize_t countdown = counter->countdown;
    long long start = 0;
    int timed = countdown <= 0;
    if (!timed) {
        counter->countdown = countdown - 1;
    }
    else {
        if (self->tracing != Py_None) { /* None: built without tracing hooks */
            PyObject *on = PyObject_GetAttr(self->tracing, on_name);
            if (on == NULL) {
                return NULL;
            }
            int tracing = PyObject_IsTrue(on);
            Py_DECREF(on);
            if (tracing) { /* tracing on (or a broken switch, raising) */
                return tracing < 0
                           ? NULL
                           : PyObject_Vectorcall(self->traced, args, nargsf, kwnames);
            }
        }
        counter->countdown = self->reset_to;
        counter->countdown_resets++;
        start = perf_counter_ns();
    }
    PyObject *inner = PyObject_Vectorcall(self->bound, args, nargsf, kwnames);
    if (inner == NULL) { /* wrong arguments: no call was made */
        counter->countdown = countdown;
        counter->countdown_resets -= timed;
        return NULL;
    }
    LocalCall *call = PyObject_GC_New(LocalCall, &LocalCall_Type);
    if (call == NULL) {
        Py_DECREF(inner);
        return NULL;
    }
    call->inner = inner;
    call->method = Py_NewRef(op);
    call->started = 0;
    call->finished = 0;
    call->timed = timed;
    call->start = start;
    PyObject_GC_Track(call);
    return (PyObject *)call;
}

static PyObject *
LocalMethod_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"counter", "bound", "traced", "on_error", "record",
                            "tracing", "sample_every", "qualname", NULL};
    PyObject *counter, *bound, *traced, *on_error, *record, *tracing, *qualname;
    Py_ssize_t sample_every;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOOOOnU:LocalMethod", names,
                                     &CallCounter_Type, &counter, &bound, &traced,
                                     &on_error, &record, &tracing, &sample_every,
                                     &qualname)) {
        return NULL;
    }
    if (sample_every < 1) {
        PyErr_SetString(PyExc_ValueError, "sample_every must be at least 1");
        return NULL;
    }
    LocalMethod *self = (LocalMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = LocalMethod_vectorcall;
    self->counter = Py_NewRef(counter);
    self->bound = Py_NewRef(bound);
    self->traced = Py_NewRef(traced);
    self->on_error = Py_NewRef(on_error);
    self->record = Py_NewRef(record);
    self->tracing = Py_NewRef(tracing);
    self->reset_to = sample_every - 1;
    self->qualname = Py_NewRef(qualname);
    self->dict = NULL;
    return (PyObject *)self;
}

static int
LocalMethod_traverse(PyObject *op, visitproc visit, void *arg)
{
    LocalMethod *self = (LocalMethod *)op;
    Py_VISIT(self->counter);
    Py_VISIT(self->bound);
    Py_VISIT(self->traced);
    Py_VISIT(self->on_error);
    Py_VISIT(self->record);
    Py_VISIT(self->tracing);
    Py_VISIT(self->qualname);
    Py_VISIT(self->dict);
    return 0;
}

static int
LocalMethod_clear(PyObject *op)
{
    LocalMethod *self = (LocalMethod *)op;
    Py_CLEAR(self->counter);
    Py_CLEAR(self->bound);
    Py_CLEAR(self->traced);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->record);
    Py_CLEAR(self->tracing);
    Py_CLEAR(self->qualname);
    Py_CLEAR(self->dict);
    return 0;
}

static void
LocalMethod_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    LocalMethod_clear(op);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
LocalMethod_repr(PyObject *op)
{
    PyObject *qualname = ((LocalMethod *)op)->qualname;
    if (qualname == NULL) {
        return PyUnicode_FromString("<pyweaver local stub method (cleared)>");
    }
    return PyUnicode_FromFormat("<pyweaver local stub method %S>", qualname);
}

static int
set_bound(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    LocalMethod *self = (LocalMethod *)op;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a LocalMethod's bound cannot be deleted");
        return -1;
    }
    if (self->counter == NULL) { /* cleared by the garbage collector */
        PyErr_SetString(PyExc_RuntimeError, "the LocalMethod was cleared");
        return -1;
    }
    Py_SETREF(self->bound, Py_NewRef(value));
    return 0;
}

static PyObject *
get_bound(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *bound = ((LocalMethod *)op)->bound;
    if (bound == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the LocalMethod was cleared");
        return NULL;
    }
    return Py_NewRef(bound);
}

static PyObject *
get_qualname(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *qualname = ((LocalMethod *)op)->qualname;
    return Py_NewRef(qualname == NULL ? Py_None : qualname);
}

static PyGetSetDef LocalMethod_getset[] = {
    {"bound", get_bound, set_bound, "What a counted-down call calls.", NULL},
    {"__qualname__", get_qualname, NULL, "Component.method", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject LocalMethod_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyweaver._runtime._localcall.LocalMethod",
    .tp_doc = "LocalMethod(counter, bound, traced, on_error, record, tracing, sample_every, "
              "qualname): a local stub method.",
    .tp_basicsize = sizeof(LocalMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(LocalMethod, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = LocalMethod_new,
    .tp_dealloc = LocalMethod_dealloc,
    .tp_traverse = LocalMethod_traverse,
    .tp_clear = LocalMethod_clear,
    .tp_repr = LocalMethod_repr,
    .tp_getset = LocalMethod_getset,
    .tp_dictoffset = offsetof(LocalMethod, dict),
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef localcall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyweaver._runtime._localcall",
    .m_doc = "The colocated stub method in C (see _speedups.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__localcall(void)
{
    if (PyType_Ready(&CallCounter_Type) < 0 || PyType_Ready(&LocalCall_Type) < 0
        || PyType_Ready(&LocalMethod_Type) < 0) {
        return NULL;
    }
    on_name = PyUnicode_InternFromString("on");
    if (on_name == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&localcall_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "CallCounter", (PyObject *)&CallCounter_Type) < 0
        || PyModule_AddObjectRef(module, "LocalMethod", (PyObject *)&LocalMethod_Type) < 0
        || PyModule_AddObjectRef(module, "LocalCall", (PyObject *)&LocalCall_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
