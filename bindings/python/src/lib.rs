//! `shmq._shmq`: the native half of the Python package `shmq` (the package's
//! `__init__.py` re-exports it; its exceptions live in `shmq/_errors.py`).
//!
//! Every blocking call waits with the GIL released, in slices of at most [`SLICE`]: between
//! two slices it takes the GIL back and runs the interpreter's signal handlers
//! (`Python::check_signals`), so Ctrl-C raises `KeyboardInterrupt` within a slice (plus the
//! time the library takes to notice the end of a wait) however long the call's timeout.
//! Calls that can complete at once (a message is there, there is room) never release the
//! GIL: they are the fast path and cost one native call.

use std::ffi::{c_int, c_void};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyMemoryView};
use pyo3::{ffi, import_exception};

use shmq::{Consumer as RxHandle, Producer as TxHandle, Wait};

/// The longest a blocking call waits without looking at signals.
const SLICE: Duration = Duration::from_millis(20);

/// The exception classes, defined in Python (`shmq/_errors.py`) so that they can also derive
/// from the built-in classes that fit (`TimeoutError`, `ValueError`, ...).
mod errors {
    use super::import_exception;
    import_exception!(shmq._errors, Full);
    import_exception!(shmq._errors, Timeout);
    import_exception!(shmq._errors, TooLarge);
    import_exception!(shmq._errors, NotFound);
    import_exception!(shmq._errors, Exists);
    import_exception!(shmq._errors, InvalidName);
    import_exception!(shmq._errors, InvalidArgument);
    import_exception!(shmq._errors, Busy);
    import_exception!(shmq._errors, Permission);
    import_exception!(shmq._errors, Corrupt);
    import_exception!(shmq._errors, Incompatible);
    import_exception!(shmq._errors, Closed);
    import_exception!(shmq._errors, Interrupted);
    import_exception!(shmq._errors, Lapped);
    import_exception!(shmq._errors, Io);
    import_exception!(shmq._errors, Error);
}

/// The Python exception for a library error: one class per variant, with the variant's
/// fields as attributes (`TooLarge.len`/`.max`, `Lapped.missed_bytes`, `Io.errno`).
fn to_py(e: shmq::Error) -> PyErr {
    use shmq::Error as E;
    let msg = e.to_string();
    match e {
        E::Full => PyErr::new::<errors::Full, _>(msg),
        E::Timeout => PyErr::new::<errors::Timeout, _>(msg),
        E::TooLarge { len, max } => PyErr::new::<errors::TooLarge, _>((msg, len, max)),
        E::NotFound(_) => PyErr::new::<errors::NotFound, _>(msg),
        E::Exists(_) => PyErr::new::<errors::Exists, _>(msg),
        E::InvalidName(_) => PyErr::new::<errors::InvalidName, _>(msg),
        E::InvalidArgument(_) => PyErr::new::<errors::InvalidArgument, _>(msg),
        E::Busy(_) => PyErr::new::<errors::Busy, _>(msg),
        E::Permission(_) => PyErr::new::<errors::Permission, _>(msg),
        E::Corrupt(_) => PyErr::new::<errors::Corrupt, _>(msg),
        E::Incompatible(_) => PyErr::new::<errors::Incompatible, _>(msg),
        E::Closed => PyErr::new::<errors::Closed, _>(msg),
        E::Interrupted => PyErr::new::<errors::Interrupted, _>(msg),
        E::Lapped { missed_bytes } => PyErr::new::<errors::Lapped, _>((msg, missed_bytes)),
        E::Io { context, source } => {
            PyErr::new::<errors::Io, _>((format!("{context}: {source}"), source.raw_os_error()))
        }
        // The enum is non-exhaustive: a variant added later still gets the base class.
        _ => PyErr::new::<errors::Error, _>(msg),
    }
}

/// `timeout` in seconds as the deadline of a blocking call: `None` waits forever; `0` (or
/// less) means "do not wait" and gives `Some(now)`.
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout is NaN")),
        Some(t) if t <= 0.0 => Ok(Some(Instant::now())),
        Some(t) => {
            let d = Duration::try_from_secs_f64(t).map_err(|_| PyValueError::new_err("timeout too large"))?;
            // A deadline past what `Instant` can hold is "forever".
            Ok(Instant::now().checked_add(d))
        }
    }
}

/// Runs `attempt` (a library call waiting at most the duration it is given) with the GIL
/// released, in slices of at most [`SLICE`], until it returns something other than
/// `Timeout` or `deadline` passes (then `shmq.Timeout`). Between slices it runs Python's
/// signal handlers: an exception they raise (`KeyboardInterrupt` for Ctrl-C) ends the call.
fn wait_loop<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Duration) -> shmq::Result<T> + Send,
) -> PyResult<T> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(to_py(shmq::Error::Timeout));
                }
                left.min(SLICE)
            }
        };
        match py.detach(|| attempt(slice)) {
            Err(shmq::Error::Timeout) => py.check_signals()?,
            r => return r.map_err(to_py),
        }
    }
}

fn parse_wait(wait: &str) -> PyResult<Wait> {
    wait.parse::<Wait>().map_err(to_py)
}

fn parse_mode(mode: &str) -> PyResult<shmq::Mode> {
    match mode {
        "spsc" => Ok(shmq::Mode::Spsc),
        "mpsc" => Ok(shmq::Mode::Mpsc),
        _ => Err(to_py(shmq::Error::InvalidArgument(format!("mode {mode:?}: use spsc or mpsc")))),
    }
}

fn mode_str(mode: shmq::Mode) -> &'static str {
    match mode {
        shmq::Mode::Spsc => "spsc",
        _ => "mpsc",
    }
}

/// The bytes of `data`: borrowed from a `bytes` object, copied from anything else that
/// offers a buffer (`bytearray`, `memoryview`, `array`, ...), since those may change while
/// the GIL is released.
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Copied(Vec<u8>),
}

impl Payload<'_> {
    fn get<'a>(py: Python<'_>, data: &'a Bound<'_, PyAny>) -> PyResult<Payload<'a>> {
        if let Ok(b) = data.cast::<PyBytes>() {
            return Ok(Payload::Borrowed(b.as_bytes()));
        }
        match pyo3::buffer::PyBuffer::<u8>::get(data) {
            Ok(buf) => Ok(Payload::Copied(buf.to_vec(py)?)),
            Err(_) => Err(PyTypeError::new_err(format!(
                "a message must be bytes or another bytes-like object, not {}",
                data.get_type().name()?
            ))),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Copied(v) => v,
        }
    }
}

fn counters_dict<'py>(py: Python<'py>, c: &shmq::CounterValues) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("messages", c.messages)?;
    d.set_item("bytes", c.bytes)?;
    d.set_item("full_events", c.full_events)?;
    d.set_item("wake_calls", c.wake_calls)?;
    d.set_item("wait_calls", c.wait_calls)?;
    Ok(d)
}

fn config_dict<'py>(py: Python<'py>, c: &shmq::Config) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &c.name)?;
    d.set_item("mode", mode_str(c.mode))?;
    d.set_item("capacity", c.capacity)?;
    d.set_item("max_message", c.max_message)?;
    d.set_item("permissions", c.permissions)?;
    d.set_item("creator_pid", c.creator_pid)?;
    d.set_item("created_unix_ns", c.created_unix_ns)?;
    Ok(d)
}

fn subscription_dict<'py>(py: Python<'py>, s: &shmq::SubscriptionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &s.name)?;
    d.set_item("lag_limit", s.lag_limit)?;
    d.set_item("position", s.position)?;
    d.set_item("lag_bytes", s.lag_bytes)?;
    d.set_item("lag_messages", s.lag_messages)?;
    d.set_item("detached", s.detached)?;
    d.set_item("lapped", s.lapped)?;
    d.set_item("missed_bytes", s.missed_bytes)?;
    d.set_item("redelivered", s.redelivered)?;
    d.set_item("received", counters_dict(py, &s.received)?)?;
    let members = PyList::empty(py);
    for m in &s.members {
        let md = PyDict::new(py);
        md.set_item("pid", m.pid)?;
        md.set_item("alive", m.alive)?;
        md.set_item("claimed", m.claimed)?;
        md.set_item("counters", counters_dict(py, &m.counters)?)?;
        md.set_item("heartbeat_unix_ns", m.heartbeat_unix_ns)?;
        members.append(md)?;
    }
    d.set_item("members", members)?;
    Ok(d)
}

/// Creates queue `name` in shared memory and returns its configuration as a dict.
///
/// `capacity` is the ring's size in bytes (a power of two from 1 KiB), `max_message` the
/// largest message (at most half the capacity; `None`: 64 KiB, or half a smaller
/// capacity), `mode` "mpsc" (any number of producers) or
/// "spsc" (one producer at a time, the fastest), `permissions` the file mode bits (must
/// include 0o600). With `exist_ok=True` an existing queue of the same options is opened
/// instead; otherwise an existing name raises `shmq.Exists`.
#[pyfunction]
#[pyo3(
    signature = (name, capacity=shmq::DEFAULT_CAPACITY, max_message=None, mode="mpsc", permissions=shmq::DEFAULT_PERMISSIONS, exist_ok=false),
    text_signature = "(name, capacity=1048576, max_message=None, mode='mpsc', permissions=0o600, exist_ok=False)"
)]
fn create<'py>(
    py: Python<'py>,
    name: &str,
    capacity: u64,
    max_message: Option<u32>,
    mode: &str,
    permissions: u32,
    exist_ok: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let half = u32::try_from(capacity / 2).unwrap_or(u32::MAX);
    let max_message = max_message.unwrap_or(shmq::DEFAULT_MAX_MESSAGE.min(half).max(1));
    let opts = shmq::Options::new()
        .capacity(capacity)
        .max_message(max_message)
        .mode(parse_mode(mode)?)
        .permissions(permissions);
    let config = if exist_ok { shmq::Queue::open_or_create(name, opts) } else { shmq::Queue::create(name, opts) };
    config_dict(py, &config.map_err(to_py)?)
}

/// Removes queue `name`: unlinks its name and wakes every waiter. Handles that are open
/// keep working on the old queue; a consumer receives what is left, then gets
/// `shmq.Closed`. Raises `shmq.NotFound` if there is no such queue.
#[pyfunction]
fn remove(name: &str) -> PyResult<()> {
    shmq::Queue::remove(name).map_err(to_py)
}

/// The names of the shmq queues on this host, sorted.
#[pyfunction]
fn list_queues() -> PyResult<Vec<String>> {
    shmq::Queue::list().map_err(to_py)
}

/// A snapshot of queue `name` as a dict: its configuration (the keys of `create`'s result),
/// `tail`, `head`, `used_bytes`, `messages` (waiting), `closed`, the `sent` and `received`
/// counters (dicts of `messages`, `bytes`, `full_events`, `wake_calls`, `wait_calls`),
/// `reclaimed_claims`, `participants` (a list of dicts: `slot`, `role`, `pid`, `alive`,
/// `start_time`, `heartbeat_unix_ns`, `counters`) and `subscriptions` (as
/// `Subscription.list` gives them). Values may change at once.
#[pyfunction]
fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let s = shmq::Queue::inspect(name).map_err(to_py)?;
    let d = config_dict(py, &s.config)?;
    d.set_item("tail", s.tail)?;
    d.set_item("head", s.head)?;
    d.set_item("used_bytes", s.used_bytes)?;
    d.set_item("messages", s.messages)?;
    d.set_item("closed", s.closed)?;
    d.set_item("sent", counters_dict(py, &s.sent)?)?;
    d.set_item("received", counters_dict(py, &s.received)?)?;
    d.set_item("reclaimed_claims", s.reclaimed_claims)?;
    let parts = PyList::empty(py);
    for p in &s.participants {
        let pd = PyDict::new(py);
        pd.set_item("slot", p.slot)?;
        pd.set_item("role", if p.role == shmq::Role::Producer { "producer" } else { "consumer" })?;
        pd.set_item("pid", p.pid)?;
        pd.set_item("alive", p.alive)?;
        pd.set_item("start_time", p.start_time)?;
        pd.set_item("heartbeat_unix_ns", p.heartbeat_unix_ns)?;
        pd.set_item("counters", counters_dict(py, &p.counters)?)?;
        parts.append(pd)?;
    }
    d.set_item("participants", parts)?;
    let subs = PyList::empty(py);
    for sub in &s.subscriptions {
        subs.append(subscription_dict(py, sub)?)?;
    }
    d.set_item("subscriptions", subs)?;
    Ok(d)
}

/// Takes the lock of a handle without waiting: a handle is used by one thread at a time, and
/// waiting for the lock with the GIL held could deadlock with the thread that holds it (it
/// takes the GIL back between its wait slices).
fn lock<T>(m: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => {
            Err(PyRuntimeError::new_err("this handle is in use by another thread (use one handle per thread)"))
        }
        // A panic in a call is raised as an exception; the handle's state is the library's,
        // which stays consistent.
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
    }
}

fn closed_handle(what: &str) -> PyErr {
    PyValueError::new_err(format!("I/O operation on a closed {what}"))
}

/// Attaches to queue `name` as a producer. `wait` says how a call waits while the queue is
/// full: "spin" (busy-poll: lowest latency, a core at 100%), "block" (sleep in the kernel at
/// once) or "adaptive" (spin ~50 µs, then sleep). Raises `shmq.NotFound` if the queue does
/// not exist, `shmq.Busy` if it is SPSC and another live process produces.
///
/// A context manager: `with shmq.Producer("orders") as tx: tx.send(b"...")`; leaving the
/// block (or `close()`) detaches it. Use one handle per thread; a forked child opens its own.
#[pyclass(module = "shmq", frozen)]
struct Producer {
    inner: Mutex<Option<TxHandle>>,
    interrupter: shmq::Interrupter,
    name: String,
}

impl Producer {
    fn with<R>(&self, f: impl FnOnce(&mut TxHandle) -> PyResult<R>) -> PyResult<R> {
        let mut g = lock(&self.inner)?;
        match g.as_mut() {
            Some(tx) => f(tx),
            None => Err(closed_handle("Producer")),
        }
    }
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (name, wait="adaptive"))]
    fn new(name: &str, wait: &str) -> PyResult<Producer> {
        let tx = TxHandle::open_with(name, parse_wait(wait)?).map_err(to_py)?;
        let interrupter = tx.interrupter();
        Ok(Producer { inner: Mutex::new(Some(tx)), interrupter, name: name.to_owned() })
    }

    /// Sends `data` (bytes or any bytes-like object) as one message. While the queue is
    /// full it waits: forever for `timeout=None`, at most `timeout` seconds otherwise
    /// (`shmq.Timeout`); `timeout=0` does not wait (`shmq.Full`). Raises `shmq.TooLarge`
    /// past the queue's `max_message`, `shmq.Closed` if the queue was removed.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let payload = Payload::get(py, data)?;
        let msg = payload.bytes();
        self.with(|tx| {
            // `send` returns the message id or nothing, depending on the library version.
            match tx.try_send(msg) {
                Ok(_) => return Ok(()),
                Err(shmq::Error::Full) => {}
                Err(e) => return Err(to_py(e)),
            }
            let deadline = deadline(timeout)?;
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(to_py(shmq::Error::Full));
            }
            wait_loop(py, deadline, |slice| tx.send_timeout(msg, slice).map(|_| ()))
        })
    }

    /// Sends `data` if there is room now: `True` if it was sent, `False` if the queue is full.
    fn try_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let payload = Payload::get(py, data)?;
        self.with(|tx| match tx.try_send(payload.bytes()) {
            Ok(_) => Ok(true),
            Err(shmq::Error::Full) => Ok(false),
            Err(e) => Err(to_py(e)),
        })
    }

    /// Sends every message of the iterable `messages` (bytes or bytearray), in order, with
    /// one publication (and at most one wakeup) per run of messages that fits. Waits for
    /// room like `send`, `timeout` bounding the whole call. If a message is too large
    /// nothing is sent. On an error after some were sent (a timeout), the exception's
    /// `sent` attribute says how many were.
    #[pyo3(signature = (messages, timeout=None))]
    fn send_batch(&self, py: Python<'_>, messages: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let msgs: Vec<PyBackedBytes> =
            messages.try_iter()?.map(|m| m.and_then(|m| m.extract().map_err(PyErr::from))).collect::<PyResult<_>>()?;
        let deadline = deadline(timeout)?;
        self.with(|tx| {
            let mut sent = 0;
            let with_sent = |e: PyErr, sent: usize| {
                // Best effort: the attribute is information.
                let _ = e.value(py).setattr("sent", sent);
                e
            };
            while sent < msgs.len() {
                match tx.try_send_batch(&msgs[sent..]) {
                    Ok(n) => sent += n,
                    Err(shmq::Error::Full) => {
                        if deadline.is_some_and(|d| d <= Instant::now()) {
                            return Err(with_sent(to_py(shmq::Error::Full), sent));
                        }
                        let m: &[u8] = &msgs[sent];
                        wait_loop(py, deadline, |slice| tx.send_timeout(m, slice).map(|_| ()))
                            .map_err(|e| with_sent(e, sent))?;
                        sent += 1;
                    }
                    Err(e) => return Err(with_sent(to_py(e), sent)),
                }
            }
            Ok(())
        })
    }

    /// Makes a `send` of this producer that is waiting for room (now, in another thread, or
    /// the next one to wait) raise `shmq.Interrupted`. Safe to call from any thread.
    fn interrupt(&self) {
        self.interrupter.interrupt();
    }

    /// Detaches from the queue (frees this producer's slot). Idempotent; later calls raise
    /// `ValueError`.
    fn close(&self) -> PyResult<()> {
        lock(&self.inner)?.take();
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(lock(&self.inner)?.is_none())
    }

    /// The queue's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The wait policy: "spin", "block" or "adaptive" (settable).
    #[getter]
    fn get_wait(&self) -> PyResult<&'static str> {
        self.with(|tx| Ok(tx.wait().as_str()))
    }

    #[setter]
    fn set_wait(&self, wait: &str) -> PyResult<()> {
        let w = parse_wait(wait)?;
        self.with(|tx| {
            tx.set_wait(w);
            Ok(())
        })
    }

    /// The queue's configuration (the dict `create` returns).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.with(|tx| config_dict(py, tx.config()))
    }

    /// Messages waiting in the queue (a snapshot).
    fn __len__(&self) -> PyResult<usize> {
        self.with(|tx| Ok(tx.len()))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmq.Producer queue={:?}>", self.name)
    }
}

/// The memory of a message received by `Consumer.recv_view`, exported as a read-only
/// buffer. It keeps the queue mapped (through an interrupter of the consumer, which holds
/// the mapping) for as long as any view of it lives, so a stale view never reads unmapped
/// memory; what it reads after the consumer's next call is whatever producers wrote there.
#[pyclass(module = "shmq", frozen)]
struct MessageBuffer {
    /// The payload's first byte, as an address (`len` bytes inside the mapping).
    addr: usize,
    len: usize,
    _mapping: shmq::Interrupter,
}

#[pymethods]
impl MessageBuffer {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let (addr, len) = (slf.get().addr, slf.get().len);
        let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("message too large"))?;
        // SAFETY: `view` is the buffer struct the interpreter passes to this slot; `addr`
        // points to `len` bytes of the queue's mapping, which `_mapping` keeps alive as long
        // as this object, whose reference `PyBuffer_FillInfo` stores in `view.obj`.
        // `readonly = 1`: a writable request fails with BufferError.
        let rc = unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), addr as *mut c_void, len, 1, flags) };
        if rc == 0 { Ok(()) } else { Err(PyErr::fetch(slf.py())) }
    }
}

/// Attaches to queue `name` as its consumer. Without `subscription` (or with "default") it
/// reads the queue's default subscription, one consumer at a time (`shmq.Busy` if another
/// live process reads it). With `subscription="billing"` it joins that subscription (made
/// with `Subscription.create`) as one of its members: members share its messages, each
/// message going to one of them. `wait` is as for `Producer`.
///
/// A context manager, and an iterator: `for msg in rx:` receives until the queue is removed
/// and drained (it ends on `shmq.Closed`). Use one handle per thread.
#[pyclass(module = "shmq", frozen)]
struct Consumer {
    inner: Mutex<RxState>,
    interrupter: shmq::Interrupter,
    name: String,
    subscription: String,
}

struct RxState {
    rx: Option<RxHandle>,
    /// The memoryview `recv_view` returned last, whose message is still the head.
    view: Option<Py<PyMemoryView>>,
}

impl Drop for RxState {
    /// A consumer dropped without `close()` (garbage-collected) takes the message of a
    /// pending `recv_view` too, as `close()` does: it was received. (The memoryview is not
    /// released here, which needs the GIL; it keeps the mapping alive.)
    fn drop(&mut self) {
        if let (Some(rx), Some(_)) = (self.rx.as_mut(), self.view.take()) {
            let _ = rx.advance();
        }
    }
}

impl Consumer {
    /// Runs `f` on the consumer after finishing a pending `recv_view` (its memoryview is
    /// released and its message taken).
    fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut RxHandle, &mut Option<Py<PyMemoryView>>) -> PyResult<R>,
    ) -> PyResult<R> {
        let mut g = lock(&self.inner)?;
        let st = &mut *g;
        let Some(rx) = st.rx.as_mut() else { return Err(closed_handle("Consumer")) };
        finish_view(py, rx, &mut st.view)?;
        f(rx, &mut st.view)
    }

    fn recv_impl<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.with(py, |rx, _| {
            if let Some(m) = rx.try_recv().map_err(to_py)? {
                return Ok(PyBytes::new(py, &m));
            }
            let deadline = deadline(timeout)?;
            loop {
                // Wait (GIL released) until a message is at the head, then take it with
                // the GIL: the bytes object is made straight from the ring.
                wait_loop(py, deadline, |slice| rx.peek(Some(slice)).map(|_| ()))?;
                if let Some(m) = rx.try_recv().map_err(to_py)? {
                    return Ok(PyBytes::new(py, &m));
                }
            }
        })
    }
}

/// Releases the memoryview of the last `recv_view` (so that using it raises `ValueError`)
/// and takes its message.
fn finish_view(py: Python<'_>, rx: &mut RxHandle, view: &mut Option<Py<PyMemoryView>>) -> PyResult<()> {
    if let Some(mv) = view.take() {
        // `release` fails only while the memoryview itself has exports (e.g. a NumPy array
        // made from it): those keep the mapping alive through `MessageBuffer`, and what they
        // read from now on may be overwritten by producers, as documented.
        let _ = mv.bind(py).call_method0("release");
        rx.advance().map_err(to_py)?;
    }
    Ok(())
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (name, wait="adaptive", subscription=None))]
    fn new(name: &str, wait: &str, subscription: Option<&str>) -> PyResult<Consumer> {
        let wait = parse_wait(wait)?;
        let rx = match subscription {
            None | Some(shmq::Subscription::DEFAULT) => RxHandle::open_with(name, wait),
            Some(sub) => RxHandle::subscribe_with(name, sub, wait),
        }
        .map_err(to_py)?;
        let interrupter = rx.interrupter();
        Ok(Consumer {
            inner: Mutex::new(RxState { rx: Some(rx), view: None }),
            interrupter,
            name: name.to_owned(),
            subscription: subscription.unwrap_or(shmq::Subscription::DEFAULT).to_owned(),
        })
    }

    /// Receives the next message as bytes. While the queue is empty it waits: forever for
    /// `timeout=None`, at most `timeout` seconds otherwise; `timeout=0` does not wait.
    /// Raises `shmq.Timeout` when the time is up, `shmq.Closed` once the queue was removed
    /// and everything in it received, `shmq.Lapped` when a subscription with a lag limit
    /// fell behind (the next call goes on with the newest messages).
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_impl(py, timeout)
    }

    /// The next message if there is one now, else `None`.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.with(py, |rx, _| Ok(rx.try_recv().map_err(to_py)?.map(|m| PyBytes::new(py, &m))))
    }

    /// Receives the next message without copying it: a read-only `memoryview` of the
    /// message in shared memory. It is valid until the next call on this consumer (any
    /// call, or `close()`), which releases it (using it then raises `ValueError`) and hands
    /// the space back to producers. Copy what you keep (`bytes(view)`). Waits and raises
    /// like `recv`.
    #[pyo3(signature = (timeout=None))]
    fn recv_view<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyMemoryView>> {
        let interrupter = self.interrupter.clone();
        self.with(py, |rx, view| {
            let (addr, len) = match rx.try_peek().map_err(to_py)? {
                Some(m) => (m.as_ptr() as usize, m.len()),
                None => {
                    let deadline = deadline(timeout)?;
                    wait_loop(py, deadline, |slice| rx.peek(Some(slice)).map(|m| (m.as_ptr() as usize, m.len())))?
                }
            };
            let buf = Bound::new(py, MessageBuffer { addr, len, _mapping: interrupter })?;
            let mv = PyMemoryView::from(buf.as_any())?;
            *view = Some(mv.clone().unbind());
            Ok(mv)
        })
    }

    /// Receives up to `max` messages that are in the queue, as a list of bytes, publishing
    /// the consumer's position once. Waits (as `recv`) for the first one only: the list has
    /// at least one message unless `timeout=0` found the queue empty (then it is empty).
    #[pyo3(signature = (max=64, timeout=None))]
    fn recv_batch<'py>(&self, py: Python<'py>, max: usize, timeout: Option<f64>) -> PyResult<Bound<'py, PyList>> {
        self.with(py, |rx, _| {
            let list = PyList::empty(py);
            let mut failed = None;
            let mut take = |rx: &mut RxHandle| {
                rx.try_recv_batch(max, |m| {
                    if let Err(e) = list.append(PyBytes::new(py, m)) {
                        failed.get_or_insert(e);
                    }
                })
                .map_err(to_py)
            };
            let mut n = take(rx)?;
            let deadline = deadline(timeout)?;
            while n == 0 && max > 0 && deadline.is_none_or(|d| d > Instant::now()) {
                wait_loop(py, deadline, |slice| rx.peek(Some(slice)).map(|_| ()))?;
                n = take(rx)?;
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(list),
            }
        })
    }

    /// Makes a receive of this consumer that is waiting for a message (now, in another
    /// thread, or the next one to wait) raise `shmq.Interrupted`. Safe from any thread.
    fn interrupt(&self) {
        self.interrupter.interrupt();
    }

    /// Releases a pending `recv_view` and detaches from the queue. Idempotent; later calls
    /// raise `ValueError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut g = lock(&self.inner)?;
        let st = &mut *g;
        if let Some(rx) = st.rx.as_mut() {
            let r = finish_view(py, rx, &mut st.view);
            st.rx = None;
            r?;
        }
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(lock(&self.inner)?.rx.is_none())
    }

    /// The queue's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The subscription this consumer reads ("default" unless one was given).
    #[getter]
    fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The wait policy: "spin", "block" or "adaptive" (settable).
    #[getter]
    fn get_wait(&self) -> PyResult<&'static str> {
        let g = lock(&self.inner)?;
        g.rx.as_ref().map(|rx| rx.wait().as_str()).ok_or_else(|| closed_handle("Consumer"))
    }

    #[setter]
    fn set_wait(&self, wait: &str) -> PyResult<()> {
        let w = parse_wait(wait)?;
        let mut g = lock(&self.inner)?;
        g.rx.as_mut().map(|rx| rx.set_wait(w)).ok_or_else(|| closed_handle("Consumer"))
    }

    /// The queue's configuration (the dict `create` returns).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let g = lock(&self.inner)?;
        let rx = g.rx.as_ref().ok_or_else(|| closed_handle("Consumer"))?;
        config_dict(py, rx.config())
    }

    /// Messages waiting in the queue (a snapshot).
    fn __len__(&self) -> PyResult<usize> {
        let g = lock(&self.inner)?;
        g.rx.as_ref().map(|rx| rx.len()).ok_or_else(|| closed_handle("Consumer"))
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv_impl(py, None) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_instance_of::<errors::Closed>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmq.Consumer queue={:?} subscription={:?}>", self.name, self.subscription)
    }
}

/// Named subscriptions of a queue: each gets every message sent after its creation
/// (fan-out); the consumers that join one (`Consumer(name, subscription=...)`) share its
/// messages. The default subscription ("default") exists from the queue's creation.
#[pyclass(module = "shmq", frozen)]
struct Subscription;

#[pymethods]
impl Subscription {
    /// The name of the default subscription.
    #[classattr]
    const DEFAULT: &'static str = shmq::Subscription::DEFAULT;

    /// Creates subscription `name` on `queue`, starting with the next message sent.
    /// `lag_limit=None`: producers wait for it, it misses nothing; `lag_limit=bytes`: it
    /// never holds producers back by more than that, and a member's receive raises
    /// `shmq.Lapped` after it fell that far behind. Creating one that exists with the same
    /// options does nothing; other options raise `shmq.InvalidArgument`.
    #[staticmethod]
    #[pyo3(signature = (queue, name, lag_limit=None))]
    fn create(queue: &str, name: &str, lag_limit: Option<u64>) -> PyResult<()> {
        shmq::Subscription::create(queue, name, shmq::SubscriptionOptions::new().lag_limit(lag_limit)).map_err(to_py)
    }

    /// The subscriptions of `queue` as dicts (`name`, `lag_limit`, `position`, `lag_bytes`,
    /// `lag_messages`, `detached`, `lapped`, `missed_bytes`, `redelivered`, `received`,
    /// `members`), the default one first if it exists.
    #[staticmethod]
    fn list<'py>(py: Python<'py>, queue: &str) -> PyResult<Bound<'py, PyList>> {
        let infos = shmq::Subscription::list(queue).map_err(to_py)?;
        let l = PyList::empty(py);
        for i in &infos {
            l.append(subscription_dict(py, i)?)?;
        }
        Ok(l)
    }

    /// Removes subscription `name` of `queue`: producers stop waiting for it, its members'
    /// receives raise `shmq.Closed`.
    #[staticmethod]
    fn remove(queue: &str, name: &str) -> PyResult<()> {
        shmq::Subscription::remove(queue, name).map_err(to_py)
    }
}

/// The native module; `shmq/__init__.py` re-exports it.
#[pymodule]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(list_queues, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<MessageBuffer>()?;
    m.add("DEFAULT_CAPACITY", shmq::DEFAULT_CAPACITY)?;
    m.add("DEFAULT_MAX_MESSAGE", shmq::DEFAULT_MAX_MESSAGE)?;
    m.add("DEFAULT_PERMISSIONS", shmq::DEFAULT_PERMISSIONS)?;
    m.add("MAX_NAME_LEN", shmq::MAX_NAME_LEN)?;
    Ok(())
}
