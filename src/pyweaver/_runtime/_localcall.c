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

/* Whether tracing is on: 1, 0, or -1 with an error set. */
static int
tracing_on(PyObject *tracing)
{
    if (tracing == Py_None) { /* built without tracing hooks */
        return 0;
    }
    PyObject *on = PyObject_GetAttr(tracing, on_name);
    if (on == NULL) {
        return -1;
    }
    int result = PyObject_IsTrue(on);
    Py_DECREF(on);
    return result;
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

/* record(latency_ns, error) for a call made at ``start`` (no error may be set). */
static void
record_latency(PyObject *record, long long start, PyObject *error)
{
    long long latency = perf_counter_ns() - start;
    PyObject *ns = PyLong_FromLongLong(latency < 0 ? 0 : latency);
    if (ns == NULL) {
        PyErr_WriteUnraisable(record);
        return;
    }
    PyObject *args[2] = {ns, error};
    call_reporting(record, PyObject_Vectorcall(record, args, 2, NULL));
    Py_DECREF(ns);
}

/* The raised error, taken out so that Python code can run (see restore_error). */
typedef struct {
    PyObject *type, *value, *traceback; /* only ``value`` on 3.12+ */
} SavedError;

static SavedError
save_error(void)
{
    SavedError saved = {NULL, NULL, NULL};
#if PY_VERSION_HEX >= 0x030C0000
    saved.value = PyErr_GetRaisedException();
#else
    PyErr_Fetch(&saved.type, &saved.value, &saved.traceback);
    PyErr_NormalizeException(&saved.type, &saved.value, &saved.traceback);
    if (saved.traceback != NULL) {
        PyException_SetTraceback(saved.value, saved.traceback);
    }
#endif
    return saved;
}

static void
restore_error(SavedError saved)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(saved.value);
#else
    PyErr_Restore(saved.type, saved.value, saved.traceback);
#endif
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
    SavedError saved = {NULL, NULL, NULL};
    if (raised) {
        saved = save_error();
    }
    if (self->timed) {
        record_latency(method->record, self->start, Py_False);
    }
    if (failed) {
        call_reporting(method->on_error, PyObject_CallOneArg(method->on_error, saved.value));
    }
    if (raised) {
        restore_error(saved);
    }
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

/* send() and __next__ of LocalCall and RemoteCall: their am_send, as Python sees it. */
static PyObject *
call_send(PyObject *op, PyObject *arg)
{
    PyObject *result;
    PySendResult status = Py_TYPE(op)->tp_as_async->am_send(op, arg, &result);
    return stop_iteration(status, result);
}

static PyObject *
call_iternext(PyObject *op)
{
    return call_send(op, Py_None);
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
    {"send", call_send, METH_O, "Send a value into the call."},
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
    .tp_iternext = call_iternext,
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
        int tracing = tracing_on(self->tracing);
        if (tracing) { /* tracing on (or a broken switch, raising) */
            return tracing < 0 ? NULL : PyObject_Vectorcall(self->traced, args, nargsf, kwnames);
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

/* ------------------------------------------------------------------ RemoteMethod */

/* A remote stub method (see _stubs.remote_method, whose pure-Python ``call`` it
   stands in for): encode the arguments, await the call client's ``call``, decode
   the reply, record the method metrics. Calling one makes a RemoteCall; nothing runs
   until it is first sent into (as with an ``async def``). Calls with keywords,
   calls before the client is known, and calls while tracing is on go to ``slow``,
   the pure-Python stub method. */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *slow;          /* the pure-Python stub method */
    PyObject *send;          /* the call client's ``call``; None until connected */
    PyObject *encode_args;   /* encode_args(args_tuple) -> bytes */
    PyObject *decode_result; /* decode_result(reply) -> the result (or raises) */
    PyObject *record;        /* record(latency_ns, True): a failed call */
    PyObject *record_remote; /* record_remote(latency_ns, request, reply) */
    PyObject *tracing;       /* its ``on`` says whether tracing is on (None: never) */
    PyObject *key;           /* the method key */
    PyObject *retriable;     /* True or False */
    PyObject *qualname;
    PyObject *dict;
} RemoteMethod;

typedef struct {
    PyObject_HEAD
    PyObject *method; /* the RemoteMethod */
    PyObject *args;   /* the arguments, until the call starts */
    PyObject *inner;  /* the call client's coroutine, once started */
    Py_ssize_t request_size;
    long long start;  /* perf counter, ns, when the request was encoded */
    int finished;     /* ended (or closed before it started): report nothing more */
} RemoteCall;

static PyTypeObject RemoteMethod_Type;
static PyTypeObject RemoteCall_Type;
static PyObject *send_kwnames; /* ("retriable", "shard_key") */
static PyObject *zero;         /* the shard key of an unrouted call */

/* The call raised the current error: an Exception (not a cancellation) is a failed
   call. The error stays set. */
static void
remote_failed(RemoteCall *self)
{
    self->finished = 1;
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return;
    }
    RemoteMethod *method = (RemoteMethod *)self->method;
    if (method->record == NULL) { /* cleared */
        return;
    }
    SavedError saved = save_error();
    record_latency(method->record, self->start, Py_True);
    restore_error(saved);
}

/* The client's coroutine returned ``reply`` (a new reference, consumed): decode it,
   record the call, and return the result as ``*result``. */
static PySendResult
remote_returned(RemoteCall *self, PyObject *reply, PyObject **result)
{
    RemoteMethod *method = (RemoteMethod *)self->method;
    Py_CLEAR(self->inner);
    PyObject *decoded = PyObject_CallOneArg(method->decode_result, reply);
    Py_ssize_t reply_size = decoded == NULL ? -1 : PyObject_Length(reply);
    Py_DECREF(reply);
    if (decoded == NULL || reply_size < 0) {
        Py_XDECREF(decoded);
        *result = NULL;
        remote_failed(self);
        return PYGEN_ERROR;
    }
    self->finished = 1;
    long long latency = perf_counter_ns() - self->start;
    PyObject *numbers[3] = {PyLong_FromLongLong(latency < 0 ? 0 : latency),
                            PyLong_FromSsize_t(self->request_size),
                            PyLong_FromSsize_t(reply_size)};
    if (numbers[0] == NULL || numbers[1] == NULL || numbers[2] == NULL) {
        PyErr_WriteUnraisable(method->record_remote);
    }
    else {
        call_reporting(method->record_remote,
                       PyObject_Vectorcall(method->record_remote, numbers, 3, NULL));
    }
    Py_XDECREF(numbers[0]);
    Py_XDECREF(numbers[1]);
    Py_XDECREF(numbers[2]);
    *result = decoded;
    return PYGEN_RETURN;
}

/* The first send: encode, then start the client's call. */
static PyObject *
remote_start(RemoteCall *self)
{
    RemoteMethod *method = (RemoteMethod *)self->method;
    PyObject *args = self->args;
    self->args = NULL;
    PyObject *payload = PyObject_CallOneArg(method->encode_args, args);
    Py_DECREF(args);
    if (payload == NULL) { /* not sent, so not a call (as in the Python stub) */
        self->finished = 1;
        return NULL;
    }
    self->request_size = PyObject_Length(payload);
    self->start = perf_counter_ns();
    PyObject *inner = NULL;
    if (self->request_size >= 0) {
        PyObject *call_args[5] = {NULL, method->key, payload, method->retriable, zero};
        inner = PyObject_Vectorcall(method->send, call_args + 1,
                                    2 | PY_VECTORCALL_ARGUMENTS_OFFSET, send_kwnames);
    }
    Py_DECREF(payload);
    if (inner == NULL) {
        remote_failed(self);
    }
    return inner;
}

static PySendResult
RemoteCall_am_send(PyObject *op, PyObject *arg, PyObject **result)
{
    RemoteCall *self = (RemoteCall *)op;
    *result = NULL;
    if (self->method == NULL) {
        return cleared();
    }
    if (self->inner == NULL) {
        if (self->finished || self->args == NULL) {
            PyErr_SetString(PyExc_RuntimeError,
                            "cannot reuse already awaited pyweaver remote call");
            return PYGEN_ERROR;
        }
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        self->inner = remote_start(self);
        if (self->inner == NULL) {
            return PYGEN_ERROR;
        }
    }
    PySendResult status = PyIter_Send(self->inner, arg, result);
    if (status == PYGEN_RETURN) {
        return remote_returned(self, *result, result);
    }
    if (status == PYGEN_ERROR) {
        Py_CLEAR(self->inner);
        remote_failed(self);
    }
    return status;
}

/* throw() into a call that never started: it raises at once, and never runs. */
static PyObject *
raise_thrown(PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *thrown = nargs > 0 ? args[0] : NULL;
    if (thrown != NULL && PyExceptionInstance_Check(thrown)) {
        PyErr_SetObject((PyObject *)Py_TYPE(thrown), thrown);
    }
    else if (thrown != NULL && PyExceptionClass_Check(thrown)) {
        PyErr_SetObject(thrown, nargs > 1 ? args[1] : NULL);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
    }
    return NULL;
}

static PyObject *
RemoteCall_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    RemoteCall *self = (RemoteCall *)op;
    if (self->method == NULL) {
        cleared();
        return NULL;
    }
    if (self->inner == NULL) {
        self->finished = 1;
        Py_CLEAR(self->args);
        return raise_thrown(args, nargs);
    }
    PyObject *throw = PyObject_GetAttrString(self->inner, "throw");
    if (throw == NULL) {
        return NULL;
    }
    PyObject *yielded = PyObject_Vectorcall(throw, args, (size_t)nargs, NULL);
    Py_DECREF(throw);
    if (yielded != NULL) {
        return yielded;
    }
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        Py_CLEAR(self->inner);
        remote_failed(self);
        return NULL;
    }
    /* It caught what was thrown and returned its reply. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *stop = PyErr_GetRaisedException();
#else
    PyObject *type, *stop, *traceback;
    PyErr_Fetch(&type, &stop, &traceback);
    PyErr_NormalizeException(&type, &stop, &traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
#endif
    PyObject *reply = stop == NULL ? NULL : PyObject_GetAttrString(stop, "value");
    Py_XDECREF(stop);
    if (reply == NULL) {
        Py_CLEAR(self->inner);
        remote_failed(self);
        return NULL;
    }
    PyObject *result = NULL;
    PySendResult status = remote_returned(self, reply, &result);
    return stop_iteration(status, result);
}

static PyObject *
RemoteCall_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    RemoteCall *self = (RemoteCall *)op;
    self->finished = 1;
    Py_CLEAR(self->args);
    PyObject *inner = self->inner;
    if (inner == NULL) {
        Py_RETURN_NONE;
    }
    self->inner = NULL;
    PyObject *closed = PyObject_CallMethod(inner, "close", NULL);
    Py_DECREF(inner);
    return closed;
}

static PyObject *
RemoteCall_repr(PyObject *op)
{
    RemoteCall *self = (RemoteCall *)op;
    if (self->method == NULL) {
        return PyUnicode_FromString("<pyweaver remote call (cleared)>");
    }
    return PyUnicode_FromFormat("<pyweaver remote call %S>",
                                ((RemoteMethod *)self->method)->qualname);
}

static int
RemoteCall_traverse(PyObject *op, visitproc visit, void *arg)
{
    RemoteCall *self = (RemoteCall *)op;
    Py_VISIT(self->method);
    Py_VISIT(self->args);
    Py_VISIT(self->inner);
    return 0;
}

static int
RemoteCall_clear(PyObject *op)
{
    RemoteCall *self = (RemoteCall *)op;
    Py_CLEAR(self->method);
    Py_CLEAR(self->args);
    Py_CLEAR(self->inner);
    return 0;
}

static void
RemoteCall_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    RemoteCall_clear(op);
    PyObject_GC_Del(op);
}

static PyMethodDef RemoteCall_methods[] = {
    {"send", call_send, METH_O, "Send a value into the call."},
    {"throw", (PyCFunction)(void (*)(void))RemoteCall_throw, METH_FASTCALL,
     "Raise an exception inside the call."},
    {"close", RemoteCall_close, METH_NOARGS, "Close the call."},
    {NULL},
};

static PyAsyncMethods RemoteCall_async = {
    .am_await = LocalCall_await, /* returns itself */
    .am_send = RemoteCall_am_send,
};

static PyTypeObject RemoteCall_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyweaver._runtime._localcall.RemoteCall",
    .tp_doc = "One call of a RemoteMethod: await it once.",
    .tp_basicsize = sizeof(RemoteCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = RemoteCall_dealloc,
    .tp_traverse = RemoteCall_traverse,
    .tp_clear = RemoteCall_clear,
    .tp_repr = RemoteCall_repr,
    .tp_as_async = &RemoteCall_async,
    .tp_iternext = call_iternext,
    .tp_methods = RemoteCall_methods,
};

static PyObject *
RemoteMethod_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames)
{
    RemoteMethod *self = (RemoteMethod *)op;
    if (self->slow == NULL) {
        cleared();
        return NULL;
    }
    int slow = (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) || self->send == Py_None;
    if (!slow) {
        slow = tracing_on(self->tracing);
        if (slow < 0) {
            return NULL;
        }
    }
    if (slow) {
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
    }
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    RemoteCall *call = PyObject_GC_New(RemoteCall, &RemoteCall_Type);
    if (call == NULL) {
        Py_DECREF(tuple);
        return NULL;
    }
    call->method = Py_NewRef(op);
    call->args = tuple;
    call->inner = NULL;
    call->request_size = 0;
    call->start = 0;
    call->finished = 0;
    PyObject_GC_Track(call);
    return (PyObject *)call;
}

static PyObject *
RemoteMethod_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"slow", "encode_args", "decode_result", "record", "record_remote",
                            "tracing", "key", "retriable", "qualname", NULL};
    PyObject *slow, *encode_args, *decode_result, *record, *record_remote, *tracing, *key;
    PyObject *qualname;
    int retriable;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOSpU:RemoteMethod", names, &slow,
                                     &encode_args, &decode_result, &record, &record_remote,
                                     &tracing, &key, &retriable, &qualname)) {
        return NULL;
    }
    RemoteMethod *self = (RemoteMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = RemoteMethod_vectorcall;
    self->slow = Py_NewRef(slow);
    self->send = Py_NewRef(Py_None);
    self->encode_args = Py_NewRef(encode_args);
    self->decode_result = Py_NewRef(decode_result);
    self->record = Py_NewRef(record);
    self->record_remote = Py_NewRef(record_remote);
    self->tracing = Py_NewRef(tracing);
    self->key = Py_NewRef(key);
    self->retriable = Py_NewRef(retriable ? Py_True : Py_False);
    self->qualname = Py_NewRef(qualname);
    self->dict = NULL;
    return (PyObject *)self;
}

static int
RemoteMethod_traverse(PyObject *op, visitproc visit, void *arg)
{
    RemoteMethod *self = (RemoteMethod *)op;
    Py_VISIT(self->slow);
    Py_VISIT(self->send);
    Py_VISIT(self->encode_args);
    Py_VISIT(self->decode_result);
    Py_VISIT(self->record);
    Py_VISIT(self->record_remote);
    Py_VISIT(self->tracing);
    Py_VISIT(self->key);
    Py_VISIT(self->retriable);
    Py_VISIT(self->qualname);
    Py_VISIT(self->dict);
    return 0;
}

static int
RemoteMethod_clear(PyObject *op)
{
    RemoteMethod *self = (RemoteMethod *)op;
    Py_CLEAR(self->slow);
    Py_CLEAR(self->send);
    Py_CLEAR(self->encode_args);
    Py_CLEAR(self->decode_result);
    Py_CLEAR(self->record);
    Py_CLEAR(self->record_remote);
    Py_CLEAR(self->tracing);
    Py_CLEAR(self->key);
    Py_CLEAR(self->retriable);
    Py_CLEAR(self->qualname);
    Py_CLEAR(self->dict);
    return 0;
}

static void
RemoteMethod_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    RemoteMethod_clear(op);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
RemoteMethod_repr(PyObject *op)
{
    PyObject *qualname = ((RemoteMethod *)op)->qualname;
    if (qualname == NULL) {
        return PyUnicode_FromString("<pyweaver remote stub method (cleared)>");
    }
    return PyUnicode_FromFormat("<pyweaver remote stub method %S>", qualname);
}

static int
set_send(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    RemoteMethod *self = (RemoteMethod *)op;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a RemoteMethod's send cannot be deleted");
        return -1;
    }
    if (self->slow == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the RemoteMethod was cleared");
        return -1;
    }
    Py_SETREF(self->send, Py_NewRef(value));
    return 0;
}

static PyObject *
get_send(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *send = ((RemoteMethod *)op)->send;
    return Py_NewRef(send == NULL ? Py_None : send);
}

static PyObject *
get_remote_qualname(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *qualname = ((RemoteMethod *)op)->qualname;
    return Py_NewRef(qualname == NULL ? Py_None : qualname);
}

static PyGetSetDef RemoteMethod_getset[] = {
    {"send", get_send, set_send, "The call client's call (None until connected).", NULL},
    {"__qualname__", get_remote_qualname, NULL, "Component.method", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject RemoteMethod_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyweaver._runtime._localcall.RemoteMethod",
    .tp_doc = "RemoteMethod(slow, encode_args, decode_result, record, record_remote, tracing, "
              "key, retriable, qualname): a remote stub method.",
    .tp_basicsize = sizeof(RemoteMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(RemoteMethod, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = RemoteMethod_new,
    .tp_dealloc = RemoteMethod_dealloc,
    .tp_traverse = RemoteMethod_traverse,
    .tp_clear = RemoteMethod_clear,
    .tp_repr = RemoteMethod_repr,
    .tp_getset = RemoteMethod_getset,
    .tp_dictoffset = offsetof(RemoteMethod, dict),
};

/* ------------------------------------------------------------------ codec helpers */

/* The generated codecs' direct paths for a message of one byte or text string (see
   _codec/_compile.py, whose pure-Python functions of the same names these match
   byte for byte): reading the string that is exactly what follows a prefix, and
   writing prefix + string in one allocation. */

/* Where the content of the definite-length CBOR string of ``major`` type at ``pos``
   starts, when that string ends exactly at ``end``; -1 for anything else. */
static Py_ssize_t
string_start(const unsigned char *data, Py_ssize_t end, Py_ssize_t pos, int major)
{
    if (pos >= end) {
        return -1;
    }
    int argument = (int)data[pos] - (major << 5);
    Py_ssize_t start;
    unsigned long long size = 0;
    if (0 <= argument && argument < 24) {
        start = pos + 1;
        size = (unsigned long long)argument;
    }
    else if (24 <= argument && argument <= 27) {
        Py_ssize_t width = (Py_ssize_t)1 << (argument - 24);
        start = pos + 1 + width;
        if (start > end) {
            return -1;
        }
        for (Py_ssize_t i = pos + 1; i < start; i++) {
            size = size << 8 | data[i];
        }
    }
    else {
        return -1;
    }
    return (unsigned long long)(end - start) == size ? start : -1;
}

/* The start of the string of ``major`` type that is exactly what follows ``prefix``
   in ``data``, or -1 (also when ``data`` is not exactly bytes). Raises TypeError
   (returning -2) on a wrong call. */
static Py_ssize_t
string_after(PyObject *const *args, Py_ssize_t nargs, int major)
{
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (data, prefix: bytes)");
        return -2;
    }
    PyObject *data = args[0], *prefix = args[1];
    if (!PyBytes_CheckExact(data)) {
        return -1;
    }
    Py_ssize_t end = PyBytes_GET_SIZE(data), pos = PyBytes_GET_SIZE(prefix);
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    if (pos > end || memcmp(bytes, PyBytes_AS_STRING(prefix), (size_t)pos) != 0) {
        return -1;
    }
    return string_start(bytes, end, pos, major);
}

static PyObject *
codec_bytes_after(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start = string_after(args, nargs, 2);
    if (start < 0) {
        return start == -2 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *data = args[0];
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start,
                                     PyBytes_GET_SIZE(data) - start);
}

static PyObject *
codec_text_after(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start = string_after(args, nargs, 3);
    if (start < 0) {
        return start == -2 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *data = args[0];
    PyObject *text = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data) + start,
                                          PyBytes_GET_SIZE(data) - start, "strict");
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* not valid UTF-8: the general way says why */
        return Py_NewRef(Py_None);
    }
    return text;
}

/* prefix + the head of a CBOR string of ``major`` type and ``size`` bytes + content */
static PyObject *
string_message(PyObject *prefix, int major, const char *content, Py_ssize_t size)
{
    unsigned char head[9];
    Py_ssize_t head_size;
    unsigned long long n = (unsigned long long)size;
    unsigned char base = (unsigned char)(major << 5);
    if (n < 24) {
        head[0] = base | (unsigned char)n;
        head_size = 1;
    }
    else {
        int width = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x100000000ULL ? 4 : 8;
        head[0] = base | (unsigned char)(width == 1 ? 24 : width == 2 ? 25 : width == 4 ? 26 : 27);
        for (int i = 0; i < width; i++) {
            head[width - i] = (unsigned char)(n >> (8 * i));
        }
        head_size = 1 + width;
    }
    Py_ssize_t prefix_size = PyBytes_GET_SIZE(prefix);
    PyObject *message = PyBytes_FromStringAndSize(NULL, prefix_size + head_size + size);
    if (message == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(message);
    memcpy(out, PyBytes_AS_STRING(prefix), (size_t)prefix_size);
    memcpy(out + prefix_size, head, (size_t)head_size);
    memcpy(out + prefix_size + head_size, content, (size_t)size);
    return message;
}

static PyObject *
codec_bytes_message(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (prefix: bytes, value: bytes)");
        return NULL;
    }
    return string_message(args[0], 2, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
}

static PyObject *
codec_text_message(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (prefix: bytes, value: str)");
        return NULL;
    }
    PyObject *utf8 = PyUnicode_AsUTF8String(args[1]);
    if (utf8 == NULL) {
        return NULL;
    }
    PyObject *message =
        string_message(args[0], 3, PyBytes_AS_STRING(utf8), PyBytes_GET_SIZE(utf8));
    Py_DECREF(utf8);
    return message;
}

static PyMethodDef localcall_functions[] = {
    {"bytes_after", (PyCFunction)(void (*)(void))codec_bytes_after, METH_FASTCALL,
     "bytes_after(data, prefix): the CBOR byte string that is exactly what follows "
     "prefix in data, or None."},
    {"text_after", (PyCFunction)(void (*)(void))codec_text_after, METH_FASTCALL,
     "text_after(data, prefix): the CBOR text string that is exactly what follows "
     "prefix in data, or None."},
    {"bytes_message", (PyCFunction)(void (*)(void))codec_bytes_message, METH_FASTCALL,
     "bytes_message(prefix, value): prefix + value as a CBOR byte string."},
    {"text_message", (PyCFunction)(void (*)(void))codec_text_message, METH_FASTCALL,
     "text_message(prefix, value): prefix + value as a CBOR text string."},
    {NULL},
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef localcall_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyweaver._runtime._localcall",
    .m_doc = "The stub methods and the codecs' direct paths in C (see _speedups.py).",
    .m_size = -1,
    .m_methods = localcall_functions,
};

PyMODINIT_FUNC
PyInit__localcall(void)
{
    if (PyType_Ready(&CallCounter_Type) < 0 || PyType_Ready(&LocalCall_Type) < 0
        || PyType_Ready(&LocalMethod_Type) < 0 || PyType_Ready(&RemoteCall_Type) < 0
        || PyType_Ready(&RemoteMethod_Type) < 0) {
        return NULL;
    }
    on_name = PyUnicode_InternFromString("on");
    send_kwnames = Py_BuildValue("(ss)", "retriable", "shard_key");
    zero = PyLong_FromLong(0);
    if (on_name == NULL || send_kwnames == NULL || zero == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&localcall_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "CallCounter", (PyObject *)&CallCounter_Type) < 0
        || PyModule_AddObjectRef(module, "LocalMethod", (PyObject *)&LocalMethod_Type) < 0
        || PyModule_AddObjectRef(module, "LocalCall", (PyObject *)&LocalCall_Type) < 0
        || PyModule_AddObjectRef(module, "RemoteMethod", (PyObject *)&RemoteMethod_Type) < 0
        || PyModule_AddObjectRef(module, "RemoteCall", (PyObject *)&RemoteCall_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
