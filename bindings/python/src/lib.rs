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
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyMemoryView, PyString};
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
    import_exception!(shmq._errors, Log);
    import_exception!(shmq._errors, NoSpace);
    import_exception!(shmq._errors, AckExpired);
    import_exception!(shmq._errors, Error);
}

/// The Python exception for a library error: one class per variant, with the variant's
/// fields as attributes (`TooLarge.len`/`.max`, `Lapped.missed_bytes`, `Io.errno`,
/// `AckExpired.id`).
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
        E::Log(_) => PyErr::new::<errors::Log, _>(msg),
        E::NoSpace => PyErr::new::<errors::NoSpace, _>(msg),
        E::AckExpired(id) => PyErr::new::<errors::AckExpired, _>((msg, id)),
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

/// On a durable queue that syncs every send (`fsync="always"`): waits (GIL released) until
/// message `id` is on disk, at most until the deadline of `timeout` (a send's `timeout=0`
/// bounds only the wait for room, as the library's `try_send`: the sync is waited for
/// without limit). Elsewhere returns at once.
fn wait_synced(
    py: Python<'_>,
    tx: &mut TxHandle,
    id: u64,
    timeout: Option<f64>,
    deadline: Option<Instant>,
) -> PyResult<()> {
    if !synced_every_send(tx) {
        return Ok(());
    }
    let deadline = if timeout.is_some_and(|t| t <= 0.0) { None } else { deadline };
    wait_loop(py, deadline, |slice| tx.wait_durable(id, Some(slice)))
}

/// Sends `msg` without waiting for its sync (`send_nowait`): at once if there is room, else
/// waiting for room (GIL released) until `deadline` (`shmq.Timeout`; a deadline already past
/// raises `shmq.Full`). Nothing is sent when it raises.
fn send_unsynced(py: Python<'_>, tx: &mut TxHandle, msg: &[u8], deadline: Option<Instant>) -> PyResult<u64> {
    match tx.try_send_nowait(msg) {
        Ok(id) => Ok(id),
        Err(shmq::Error::Full) => {
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(to_py(shmq::Error::Full));
            }
            wait_loop(py, deadline, |slice| tx.send_nowait_timeout(msg, slice))
        }
        Err(e) => Err(to_py(e)),
    }
}

/// Whether the producer's queue is durable with `fsync="always"`.
fn synced_every_send(tx: &TxHandle) -> bool {
    tx.config().durable.as_ref().is_some_and(|d| d.fsync == shmq::Fsync::Always)
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

fn invalid(msg: String) -> PyErr {
    to_py(shmq::Error::InvalidArgument(msg))
}

/// A duration given in seconds (`what` names it in the error): `InvalidArgument` for NaN, a
/// negative or a too large number.
fn seconds(what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(format!("{what} {secs}: a number of seconds, 0 or more")))
}

/// `fsync` as `create` takes it: "never", "always", or the interval in seconds (a number
/// above 0) for `Fsync::Interval`.
fn parse_fsync(v: &Bound<'_, PyAny>) -> PyResult<shmq::Fsync> {
    let usage = "use \"never\", \"always\" or an interval in seconds above 0";
    if let Ok(s) = v.cast::<PyString>() {
        return match s.to_str()? {
            "never" => Ok(shmq::Fsync::Never),
            "always" => Ok(shmq::Fsync::Always),
            other => Err(invalid(format!("fsync {other:?}: {usage}"))),
        };
    }
    // `True` is an int to Python, but surely not meant as one second.
    if v.is_instance_of::<PyBool>() {
        return Err(invalid(format!("fsync {v}: {usage}")));
    }
    let secs: f64 = v.extract().map_err(|_| {
        PyTypeError::new_err(format!("fsync must be a str or a number of seconds, not {}", v.get_type()))
    })?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(invalid(format!("fsync interval {secs}: {usage}")));
    }
    Ok(shmq::Fsync::Interval(seconds("fsync interval", secs)?))
}

/// `fsync` as `config` reports it: "never", "always" or the interval in seconds.
fn fsync_py<'py>(py: Python<'py>, f: shmq::Fsync) -> PyResult<Bound<'py, PyAny>> {
    Ok(match f {
        shmq::Fsync::Never => "never".into_pyobject(py)?.into_any(),
        shmq::Fsync::Always => "always".into_pyobject(py)?.into_any(),
        shmq::Fsync::Interval(d) => d.as_secs_f64().into_pyobject(py)?.into_any(),
    })
}

fn parse_ack(ack: &str) -> PyResult<shmq::Ack> {
    match ack {
        "auto" => Ok(shmq::Ack::Auto),
        "explicit" => Ok(shmq::Ack::Explicit),
        _ => Err(invalid(format!("ack {ack:?}: use auto or explicit"))),
    }
}

fn ack_str(ack: shmq::Ack) -> &'static str {
    match ack {
        shmq::Ack::Explicit => "explicit",
        _ => "auto",
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
    let durable = match &c.durable {
        None => None,
        Some(l) => {
            let dd = PyDict::new(py);
            // A log directory is valid UTF-8 (checked at creation).
            dd.set_item("dir", l.dir.to_string_lossy())?;
            dd.set_item("fsync", fsync_py(py, l.fsync)?)?;
            dd.set_item("max_log_bytes", l.max_log_bytes)?;
            dd.set_item(
                "retain",
                match l.retain {
                    shmq::Retain::Bytes(n) => Some(n),
                    shmq::Retain::Acked => None,
                },
            )?;
            Some(dd)
        }
    };
    d.set_item("durable", durable)?;
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
    d.set_item("ack", ack_str(s.ack))?;
    d.set_item("in_flight", s.in_flight)?;
    d.set_item("acked", s.acked)?;
    d.set_item("nacked", s.nacked)?;
    d.set_item("expired", s.expired)?;
    d.set_item("dead_lettered", s.dead_lettered)?;
    d.set_item("oldest_unacked_unix_ns", s.oldest_unacked_unix_ns)?;
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
/// largest message (at most half the capacity, less 16 bytes on a durable queue; `None`:
/// 64 KiB, or the most a smaller capacity allows), `mode` "mpsc" (any number of producers) or
/// "spsc" (one producer at a time, the fastest), `permissions` the file mode bits (must
/// include 0o600). With `exist_ok=True` an existing queue of the same options is opened
/// instead; otherwise an existing name raises `shmq.Exists`.
///
/// `durable=DIR` (a str or path) makes the queue durable: every message is also written to
/// a log in that directory (created owner-only if missing; on a real disk), from which the
/// queue is restored when it is created again (after a host restart, or `shmq.remove`) with
/// the same directory. `fsync` says when the log is synced to disk: "never" (the default:
/// a process crash loses nothing, a power cut what the kernel had not written back),
/// "always" (a send returns once its message is on disk) or a number of seconds (at most
/// about that long after a send). `max_log_bytes` (`None`: 8 GiB) bounds how far producers
/// get ahead of the slowest reader; `retain=None` deletes log segments once every
/// subscription is past them, `retain=bytes` keeps at least that much of the recent stream.
/// `fsync`, `max_log_bytes` and `retain` without `durable` raise `shmq.InvalidArgument`.
/// The result's `durable` is `None` for a volatile queue, else a dict of `dir`, `fsync`,
/// `max_log_bytes`, `retain`.
#[pyfunction]
#[pyo3(
    signature = (name, capacity=shmq::DEFAULT_CAPACITY, max_message=None, mode="mpsc", permissions=shmq::DEFAULT_PERMISSIONS, exist_ok=false, durable=None, fsync=None, max_log_bytes=None, retain=None),
    text_signature = "(name, capacity=1048576, max_message=None, mode='mpsc', permissions=0o600, exist_ok=False, durable=None, fsync='never', max_log_bytes=None, retain=None)"
)]
#[allow(clippy::too_many_arguments)] // keyword arguments, as Python has them
fn create<'py>(
    py: Python<'py>,
    name: &str,
    capacity: u64,
    max_message: Option<u32>,
    mode: &str,
    permissions: u32,
    exist_ok: bool,
    durable: Option<PathBuf>,
    fsync: Option<&Bound<'py, PyAny>>,
    max_log_bytes: Option<u64>,
    retain: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let fsync = fsync.map(parse_fsync).transpose()?;
    let mut opts = shmq::Options::new().capacity(capacity).mode(parse_mode(mode)?).permissions(permissions);
    match durable {
        Some(dir) => {
            opts = opts
                .durable(dir)
                .fsync(fsync.unwrap_or_default())
                .max_log_bytes(max_log_bytes.unwrap_or(shmq::DEFAULT_MAX_LOG_BYTES))
                .retain(retain.map_or(shmq::Retain::Acked, shmq::Retain::Bytes));
        }
        None if fsync.is_some_and(|f| f != shmq::Fsync::Never) || max_log_bytes.is_some() || retain.is_some() => {
            return Err(invalid(
                "fsync, max_log_bytes and retain are options of a durable queue: give durable=DIR too".into(),
            ));
        }
        None => {}
    }
    let limit = u32::try_from(opts.max_message_limit()).unwrap_or(u32::MAX);
    let opts = opts.max_message(max_message.unwrap_or(shmq::DEFAULT_MAX_MESSAGE.min(limit).max(1)));
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

    /// Sends `data` (bytes or any bytes-like object) as one message and returns its id (an
    /// int: increasing, never handed out twice; `Consumer.recv_message` shows it). While the
    /// queue is full it waits: forever for `timeout=None`, at most `timeout` seconds
    /// otherwise (`shmq.Timeout`); `timeout=0` does not wait (`shmq.Full`). Raises
    /// `shmq.TooLarge` past the queue's `max_message`, `shmq.Closed` if the queue was removed.
    /// On a durable queue with `fsync="always"` it returns once the message is on disk; a
    /// positive `timeout` bounds that wait too, and `shmq.Timeout` from it means the message
    /// was sent and will be on disk (`timeout=0` waits for the sync without limit).
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<u64> {
        let payload = Payload::get(py, data)?;
        let msg = payload.bytes();
        self.with(|tx| {
            let deadline = deadline(timeout)?;
            // Room first (nothing is sent on a timeout), then the sync if the queue syncs
            // every send: a send that timed out waiting for its sync must not be sent again.
            let id = send_unsynced(py, tx, msg, deadline)?;
            wait_synced(py, tx, id, timeout, deadline)?;
            Ok(id)
        })
    }

    /// Sends `data` as `send` does and returns its id, but on a durable queue with
    /// `fsync="always"` without waiting for the message to be on disk: consumers and readers
    /// see it once it is synced, and `wait_durable(id)` waits for that. One producer can so
    /// keep many messages in flight and have them synced together (a group commit).
    /// `timeout` bounds only the wait for room (`shmq.Timeout`: nothing was sent; `0`:
    /// `shmq.Full`). On any other queue it is `send`.
    #[pyo3(signature = (data, timeout=None))]
    fn send_nowait(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<u64> {
        let payload = Payload::get(py, data)?;
        let msg = payload.bytes();
        self.with(|tx| send_unsynced(py, tx, msg, deadline(timeout)?))
    }

    /// Waits until message `id` (an id `send_nowait` or `send` returned, or any id of this
    /// queue) and every message sent before it are on disk, syncing the log itself when no
    /// other process is doing it (one sync for every message waiting). Waits as `send`:
    /// forever for `timeout=None`, at most `timeout` seconds otherwise (`shmq.Timeout`; `0`
    /// looks once). On a durable queue with `fsync="never"` it waits only until the message
    /// is in the log files; on a volatile queue it returns at once. Raises `shmq.Log` if a
    /// sync failed (the queue is read-only from then on). An id not sent yet is waited for
    /// like any other (another producer may send it).
    #[pyo3(signature = (id, timeout=None))]
    fn wait_durable(&self, py: Python<'_>, id: u64, timeout: Option<f64>) -> PyResult<()> {
        self.with(|tx| {
            let deadline = deadline(timeout)?;
            // One look even for `timeout=0`, without the GIL: it may run the sync itself.
            match py.detach(|| tx.wait_durable(id, Some(Duration::ZERO))) {
                Err(shmq::Error::Timeout) => wait_loop(py, deadline, |slice| tx.wait_durable(id, Some(slice))),
                r => r.map_err(to_py),
            }
        })
    }

    /// Sends `data` if there is room now: `True` if it was sent, `False` if the queue is full.
    /// (On a durable queue with `fsync="always"` it then waits for the sync, as `send`.)
    fn try_send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let payload = Payload::get(py, data)?;
        self.with(|tx| match tx.try_send_nowait(payload.bytes()) {
            Ok(id) => wait_synced(py, tx, id, None, None).map(|()| true),
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
            // Under `fsync="always"` a batch that fits returns once it is synced: a wait on
            // the disk, done without the GIL.
            let always = synced_every_send(tx);
            while sent < msgs.len() {
                let rest = &msgs[sent..];
                let r = if always { py.detach(|| tx.try_send_batch(rest)) } else { tx.try_send_batch(rest) };
                match r {
                    Ok(n) => sent += n,
                    Err(shmq::Error::Full) => {
                        if deadline.is_some_and(|d| d <= Instant::now()) {
                            return Err(with_sent(to_py(shmq::Error::Full), sent));
                        }
                        let m: &[u8] = &msgs[sent];
                        let id = wait_loop(py, deadline, |slice| tx.send_nowait_timeout(m, slice))
                            .map_err(|e| with_sent(e, sent))?;
                        sent += 1;
                        // Sent: a timeout waiting for its sync does not unsend it.
                        wait_synced(py, tx, id, timeout, deadline).map_err(|e| with_sent(e, sent))?;
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
/// A message a durable queue's consumer read from the log files is not in the mapping but
/// in the consumer's buffer, which its next call reuses (and its end frees): such a message
/// is copied, into `_owned`, which lives as long as this object.
#[pyclass(module = "shmq", frozen)]
struct MessageBuffer {
    /// The payload's first byte, as an address (`len` bytes inside the mapping, or `_owned`).
    addr: usize,
    len: usize,
    _mapping: shmq::Interrupter,
    _owned: Option<Box<[u8]>>,
}

#[pymethods]
impl MessageBuffer {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let (addr, len) = (slf.get().addr, slf.get().len);
        let len = isize::try_from(len).map_err(|_| PyBufferError::new_err("message too large"))?;
        // SAFETY: `view` is the buffer struct the interpreter passes to this slot; `addr`
        // points to `len` bytes of the queue's mapping, which `_mapping` keeps alive as long
        // as this object, or of `_owned`, which this object owns (never changed: `frozen`);
        // `PyBuffer_FillInfo` stores a reference to this object in `view.obj`.
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
    /// Whether its subscription has explicit acks: then every message it takes enters the
    /// in-flight table, so it cannot peek and receives with `recv_timeout`.
    explicit: bool,
}

struct RxState {
    rx: Option<RxHandle>,
    /// The memoryview `recv_view` returned last, whose message is still the head.
    view: Option<Py<PyMemoryView>>,
}

impl Drop for RxState {
    /// A consumer dropped without `close()` (garbage-collected) releases the memoryview of a
    /// pending `recv_view` (using it then raises `ValueError`, as after `close()`) and takes
    /// its message: it was received.
    fn drop(&mut self) {
        if let Some(mv) = self.view.take() {
            // The interpreter drops a collected object holding the GIL: attaching is free.
            Python::attach(|py| {
                let _ = mv.bind(py).call_method0("release");
            });
            if let Some(rx) = self.rx.as_mut() {
                let _ = rx.advance();
            }
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
        self.recv_with(py, timeout, |data, _, _| Ok(PyBytes::new(py, data)))
    }

    /// Receives the next message (waiting as `recv`) and makes the result of its payload,
    /// id and delivery count with `make`.
    fn recv_with<R>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        make: impl FnOnce(&[u8], u64, u32) -> PyResult<R>,
    ) -> PyResult<R> {
        let explicit = self.explicit;
        self.with(py, |rx, _| {
            if let Some(m) = rx.try_recv().map_err(to_py)? {
                return make(&m, m.id(), m.delivery_count());
            }
            let deadline = deadline(timeout)?;
            if explicit {
                // A member with explicit acks cannot peek (every message it takes enters
                // the in-flight table): it receives with the GIL released and copies the
                // message out before taking the GIL back.
                let (data, id, count) = wait_loop(py, deadline, |slice| {
                    rx.recv_timeout(slice).map(|m| (m.to_vec(), m.id(), m.delivery_count()))
                })?;
                return make(&data, id, count);
            }
            loop {
                // Wait (GIL released) until a message is at the head, then take it with
                // the GIL: the bytes object is made straight from the ring.
                wait_loop(py, deadline, |slice| rx.peek(Some(slice)).map(|_| ()))?;
                if let Some(m) = rx.try_recv().map_err(to_py)? {
                    return make(&m, m.id(), m.delivery_count());
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
        let subscription = subscription.unwrap_or(shmq::Subscription::DEFAULT);
        // The default subscription acknowledges by receiving; a named one says.
        let explicit = subscription != shmq::Subscription::DEFAULT
            && shmq::Subscription::list(name)
                .map_err(to_py)?
                .iter()
                .any(|s| s.name == subscription && s.ack == shmq::Ack::Explicit);
        Ok(Consumer {
            inner: Mutex::new(RxState { rx: Some(rx), view: None }),
            interrupter,
            name: name.to_owned(),
            subscription: subscription.to_owned(),
            explicit,
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

    /// Receives the next message as a `shmq.Message`: its bytes (`data`), its `id` and its
    /// `delivery_count` (1 the first time; more when it is delivered again). Waits and
    /// raises like `recv`. A member of a subscription with explicit acks
    /// (`Subscription.create(..., ack="explicit")`) then acknowledges the message by its id:
    /// `ack`, `nack` or `reject`.
    #[pyo3(signature = (timeout=None))]
    fn recv_message<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, Message>> {
        self.recv_with(py, timeout, |data, id, delivery_count| {
            Bound::new(py, Message { data: PyBytes::new(py, data).unbind(), id, delivery_count })
        })
    }

    /// Acknowledges message `id` (explicit acks): it is done and never delivered again.
    /// Raises `shmq.AckExpired` if it was taken away meanwhile (held past `ack_wait`, or this
    /// member was taken for dead): it is delivered again, or was; nothing changed.
    /// `shmq.InvalidArgument` if this member does not hold it (or the subscription
    /// acknowledges by receiving).
    fn ack(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        self.with(py, |rx, _| rx.ack(id).map_err(to_py))
    }

    /// Gives message `id` back to be delivered again at once (to any member, this one
    /// included, before newer messages), its delivery count one more; after
    /// `max_deliveries` deliveries it moves to the dead-letter queue. `reason` (its first 72
    /// bytes) travels with it. Raises as `ack`.
    #[pyo3(signature = (id, reason=""))]
    fn nack(&self, py: Python<'_>, id: u64, reason: &str) -> PyResult<()> {
        self.with(py, |rx, _| rx.nack(id, reason).map_err(to_py))
    }

    /// Moves message `id` to the subscription's dead-letter queue now
    /// (`shmq.dlq_name(queue, subscription)`; read its messages with `DeadLetter.decode`),
    /// with `reason`. Raises as `ack`, and as a send to the dead-letter queue (the message
    /// then stays in flight).
    #[pyo3(signature = (id, reason=""))]
    fn reject(&self, py: Python<'_>, id: u64, reason: &str) -> PyResult<()> {
        // A send to the dead-letter queue, which may wait for its log: without the GIL.
        self.with(py, |rx, _| py.detach(|| rx.reject(id, reason)).map_err(to_py))
    }

    /// How many messages this member holds unacknowledged (explicit acks; 0 otherwise).
    #[getter]
    fn in_flight(&self) -> PyResult<usize> {
        let g = lock(&self.inner)?;
        g.rx.as_ref().map(|rx| rx.in_flight()).ok_or_else(|| closed_handle("Consumer"))
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
            // A message read from the log lives in the consumer's buffer: copied (see
            // `MessageBuffer`).
            let (addr, owned) = if rx.reads_log() {
                // SAFETY: `addr` and `len` are the slice `peek` just returned, and nothing
                // has used the consumer since.
                let b: Box<[u8]> = unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.into();
                (b.as_ptr() as usize, Some(b))
            } else {
                (addr, None)
            };
            let buf = Bound::new(py, MessageBuffer { addr, len, _mapping: interrupter, _owned: owned })?;
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

/// `start` as `Reader` takes it: "oldest", "now" or a message id (an int, 0 or more).
fn parse_start(v: &Bound<'_, PyAny>) -> PyResult<shmq::From> {
    let usage = "use \"oldest\", \"now\" or a message id (an int, 0 or more)";
    if let Ok(s) = v.cast::<PyString>() {
        return match s.to_str()? {
            "oldest" => Ok(shmq::From::Start),
            "now" => Ok(shmq::From::Now),
            other => Err(invalid(format!("start {other:?}: {usage}"))),
        };
    }
    // `True` is an int to Python, but surely not meant as id 1.
    if v.is_instance_of::<PyBool>() {
        return Err(invalid(format!("start {v}: {usage}")));
    }
    if v.is_instance_of::<PyInt>() {
        return v.extract::<u64>().map(shmq::From::Id).map_err(|_| invalid(format!("start {v}: {usage}")));
    }
    Err(PyTypeError::new_err(format!("start must be a str or an int, not {}", v.get_type())))
}

/// Reads durable queue `name`'s log, in order, from `start`: "oldest" (the oldest message
/// still in the log), "now" (what is sent from now on) or a message id (that message, or
/// the first after it). It replays without taking anything from anyone: no subscription, no
/// participant slot, nothing producers wait for; what consumers received is still there as
/// long as the log keeps it (`retain`). It sees what the log has: under `fsync="always"`,
/// what is on disk. Raises `shmq.InvalidArgument` on a volatile queue (it has no log),
/// `shmq.NotFound` if the queue does not exist.
///
/// A context manager, and an iterator of messages (bytes): `for msg in reader:` waits at
/// the end of the log for more, and ends once the queue is removed and everything read.
/// Use one handle per thread.
#[pyclass(module = "shmq", frozen)]
struct Reader {
    inner: Mutex<Option<shmq::Reader>>,
    name: String,
}

impl Reader {
    /// Reads the next message (waiting as `recv`) and makes the result of its payload and id
    /// with `make`.
    fn recv_with<R>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        make: impl FnOnce(&[u8], u64) -> PyResult<R>,
    ) -> PyResult<R> {
        let mut g = lock(&self.inner)?;
        let Some(r) = g.as_mut() else { return Err(closed_handle("Reader")) };
        if let Some(m) = r.try_recv().map_err(to_py)? {
            return make(&m, m.id());
        }
        // At the end of the log: wait for more with the GIL released, copying the message
        // out before taking the GIL back.
        let deadline = deadline(timeout)?;
        let (data, id) = wait_loop(py, deadline, |slice| r.recv_timeout(slice).map(|m| (m.to_vec(), m.id())))?;
        make(&data, id)
    }

    fn recv_impl<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_with(py, timeout, |data, _| Ok(PyBytes::new(py, data)))
    }
}

#[pymethods]
impl Reader {
    #[new]
    #[pyo3(signature = (name, start=None), text_signature = "(name, start='oldest')")]
    fn new(name: &str, start: Option<&Bound<'_, PyAny>>) -> PyResult<Reader> {
        let from = start.map(parse_start).transpose()?.unwrap_or(shmq::From::Start);
        let r = shmq::Reader::open(name, from).map_err(to_py)?;
        Ok(Reader { inner: Mutex::new(Some(r)), name: name.to_owned() })
    }

    /// Reads the next message as bytes. At the end of the log it waits for more: forever
    /// for `timeout=None`, at most `timeout` seconds otherwise; `timeout=0` does not wait.
    /// Raises `shmq.Timeout` when the time is up, `shmq.Closed` once the queue was removed
    /// and everything in its log read.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv_impl(py, timeout)
    }

    /// Reads the next message as a `shmq.Message`: its bytes (`data`) and its `id` (what
    /// `Producer.send` returned; `delivery_count` is 1). Waits and raises like `recv`.
    #[pyo3(signature = (timeout=None))]
    fn recv_message<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, Message>> {
        self.recv_with(py, timeout, |data, id| {
            Bound::new(py, Message { data: PyBytes::new(py, data).unbind(), id, delivery_count: 1 })
        })
    }

    /// Closes the log. Idempotent; later calls raise `ValueError`.
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
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmq.Reader queue={:?}>", self.name)
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
    ///
    /// `ack="explicit"` (durable queues only; no lag limit): members acknowledge each
    /// message (`Consumer.ack`, `nack`, `reject`). One held unacknowledged longer than
    /// `ack_wait` seconds (1 ms to 7 days), nacked, or held by a member that died is delivered
    /// again; after `max_deliveries` deliveries (at least 1), or when rejected, it moves to
    /// the dead-letter queue `shmq.dlq_name(queue, name)`, created with the subscription.
    /// The members hold at most `max_in_flight` (1 to 1024) messages unacknowledged at once.
    /// The three are ignored for `ack="auto"` (receiving is acknowledging).
    #[staticmethod]
    #[pyo3(
        signature = (queue, name, lag_limit=None, ack="auto", ack_wait=30.0, max_in_flight=256, max_deliveries=5),
        text_signature = "(queue, name, lag_limit=None, ack='auto', ack_wait=30.0, max_in_flight=256, max_deliveries=5)"
    )]
    fn create(
        queue: &str,
        name: &str,
        lag_limit: Option<u64>,
        ack: &str,
        ack_wait: f64,
        max_in_flight: u32,
        max_deliveries: u32,
    ) -> PyResult<()> {
        let opts = shmq::SubscriptionOptions::new()
            .lag_limit(lag_limit)
            .ack(parse_ack(ack)?)
            .ack_wait(seconds("ack_wait", ack_wait)?)
            .max_in_flight(max_in_flight)
            .max_deliveries(max_deliveries);
        shmq::Subscription::create(queue, name, opts).map_err(to_py)
    }

    /// The subscriptions of `queue` as dicts (`name`, `lag_limit`, `position`, `lag_bytes`,
    /// `lag_messages`, `detached`, `lapped`, `missed_bytes`, `redelivered`, `received`,
    /// `members`; and for acknowledgements `ack` ("auto" or "explicit"), `in_flight`,
    /// `acked`, `nacked`, `expired`, `dead_lettered` and `oldest_unacked_unix_ns`, `None`
    /// when nothing is in flight), the default one first if it exists.
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

/// A message received by `Consumer.recv_message` (its bytes, id and delivery count) or read
/// by `Reader.recv_message` (delivery count 1).
#[pyclass(module = "shmq", frozen)]
struct Message {
    data: Py<PyBytes>,
    id: u64,
    delivery_count: u32,
}

#[pymethods]
impl Message {
    /// The message (bytes).
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// Its id: its position in the queue's stream (increasing, never reused); what
    /// `Producer.send` returned, and what `Consumer.ack`, `nack` and `reject` take.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// How often it has been handed out: 1 the first time, more when it is delivered again
    /// (nacked, held past `ack_wait`, or its member died).
    #[getter]
    fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    fn __bytes__(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<shmq.Message id={} delivery_count={} len={}>",
            self.id,
            self.delivery_count,
            self.data.bind(py).as_bytes().len()
        )
    }
}

/// A message of a dead-letter queue, decoded (`DeadLetter.decode`): a message a
/// subscription with explicit acks gave up on (rejected, or delivered `max_deliveries`
/// times without an ack).
#[pyclass(module = "shmq", frozen)]
struct DeadLetter {
    id: u64,
    deliveries: u32,
    reason: String,
    unix_ns: u64,
    payload: Py<PyBytes>,
}

#[pymethods]
impl DeadLetter {
    /// Decodes `data` (bytes or any bytes-like object), a message received from a
    /// dead-letter queue (`shmq.dlq_name(queue, subscription)`). Raises `shmq.Corrupt` if it
    /// is not a dead letter.
    #[staticmethod]
    fn decode(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<DeadLetter> {
        let bytes = Payload::get(py, data)?;
        let d = shmq::DeadLetter::decode(bytes.bytes()).map_err(to_py)?;
        Ok(DeadLetter {
            id: d.id,
            deliveries: d.deliveries,
            reason: d.reason,
            unix_ns: d.unix_ns,
            payload: PyBytes::new(py, &d.payload).unbind(),
        })
    }

    /// The message's id in the original queue (a message moved twice after a crash has the
    /// same id both times).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// How often it was delivered.
    #[getter]
    fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// The last reason given (by `nack` or `reject`), or why shmq moved it.
    #[getter]
    fn reason(&self) -> &str {
        &self.reason
    }

    /// When it was moved, nanoseconds since the Unix epoch.
    #[getter]
    fn unix_ns(&self) -> u64 {
        self.unix_ns
    }

    /// The original message (bytes).
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<shmq.DeadLetter id={} deliveries={} reason={:?} len={}>",
            self.id,
            self.deliveries,
            self.reason,
            self.payload.bind(py).as_bytes().len()
        )
    }
}

/// The name of the dead-letter queue of subscription `subscription` of queue `queue`:
/// `"<queue>.<subscription>.dlq"`. It is a durable queue of its own: read it with
/// `Consumer`, decode its messages with `DeadLetter.decode`, remove it with `shmq.remove`
/// (removing the queue or the subscription leaves it).
#[pyfunction]
fn dlq_name(queue: &str, subscription: &str) -> String {
    shmq::dlq_name(queue, subscription)
}

/// The native module; `shmq/__init__.py` re-exports it.
#[pymodule]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(list_queues, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(dlq_name, m)?)?;
    m.add_class::<Producer>()?;
    m.add_class::<Consumer>()?;
    m.add_class::<Reader>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<MessageBuffer>()?;
    m.add_class::<Message>()?;
    m.add_class::<DeadLetter>()?;
    m.add("DEFAULT_CAPACITY", shmq::DEFAULT_CAPACITY)?;
    m.add("DEFAULT_MAX_MESSAGE", shmq::DEFAULT_MAX_MESSAGE)?;
    m.add("DEFAULT_PERMISSIONS", shmq::DEFAULT_PERMISSIONS)?;
    m.add("MAX_NAME_LEN", shmq::MAX_NAME_LEN)?;
    m.add("DEFAULT_MAX_LOG_BYTES", shmq::DEFAULT_MAX_LOG_BYTES)?;
    Ok(())
}
