//! # libshmq: the C ABI of shmq
//!
//! The functions, types and constants of `include/shmq.h`, which cbindgen generates from
//! this file (`SHMQ_BLESS=1 cargo test -p shmq-c --test header` rewrites it; without the
//! variable that test fails when the checked-in header differs). Everything here is a thin
//! wrapper over the Rust crate `shmq` (renamed `shmq_core` in this crate, whose own library
//! is also called `shmq`).
//!
//! Every exported function
//! * checks every pointer and length it is given: `SHMQ_ERR_INVALID` for bad ones;
//! * catches panics ([`std::panic::catch_unwind`]): `SHMQ_ERR_INTERNAL`, no unwinding
//!   crosses the ABI;
//! * saves `errno` on entry and restores it on exit, whatever happened in between;
//! * returns `SHMQ_OK` (0) or a negative `SHMQ_ERR_*` code (the `void` ones excepted).
//!
//! The C handle structs keep the zero-copy state (an outstanding reservation, a peeked
//! message), so calls out of order are refused with `SHMQ_ERR_INVALID` before they reach
//! the ring.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
#![allow(non_camel_case_types)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use shmq_core::error::code;
use shmq_core::{Consumer, Error, Mode, Options, Producer, Queue, RawGrant, Wait};

/// The version of this C interface. It is the major number of the shared library's SONAME
/// (`libshmq.so.1`): it changes only when a function, type or constant changes
/// incompatibly. Additions (new functions, fields appended to `shmq_options`) keep it.
/// Segments carry their own layout version: opening one made by an incompatible layout
/// fails with `SHMQ_ERR_INCOMPATIBLE`.
pub const SHMQ_ABI_VERSION: c_int = 1;

/// Success.
pub const SHMQ_OK: c_int = 0;
/// The queue is full and the call was not allowed to wait (timeout 0).
pub const SHMQ_ERR_FULL: c_int = -1;
/// The queue is empty and the call was not allowed to wait (timeout 0).
pub const SHMQ_ERR_EMPTY: c_int = -2;
/// A positive timeout expired before the call could complete.
pub const SHMQ_ERR_TIMEOUT: c_int = -3;
/// The message is larger than the queue's `max_message`.
pub const SHMQ_ERR_TOO_LARGE: c_int = -4;
/// `shmq_recv`: the buffer is too small; `*len` holds the size needed and the message
/// stays in the queue.
pub const SHMQ_ERR_BUFFER_TOO_SMALL: c_int = -5;
/// No queue of that name exists.
pub const SHMQ_ERR_NOT_FOUND: c_int = -6;
/// `shmq_create` of a name that already exists.
pub const SHMQ_ERR_EXISTS: c_int = -7;
/// A bad name, option, pointer, length, wait policy or call order.
pub const SHMQ_ERR_INVALID: c_int = -8;
/// The slot is held by a live process (a second consumer, or a second producer on an SPSC
/// queue), or the participant table is full.
pub const SHMQ_ERR_BUSY: c_int = -9;
/// The operating system refused access.
pub const SHMQ_ERR_PERMISSION: c_int = -10;
/// The segment failed validation (not a shmq queue, or nonsense in its control words).
pub const SHMQ_ERR_CORRUPT: c_int = -11;
/// The segment was made by another layout version of shmq.
pub const SHMQ_ERR_INCOMPATIBLE: c_int = -12;
/// The queue was removed (`shmq_remove`) and, for a consumer, everything in it received.
pub const SHMQ_ERR_CLOSED: c_int = -13;
/// Any other operating-system error.
pub const SHMQ_ERR_IO: c_int = -14;
/// A bug in libshmq was caught at the boundary (a Rust panic); the handle may be unusable.
pub const SHMQ_ERR_INTERNAL: c_int = -15;

// The codes are defined once, in the Rust crate; the literals above exist for cbindgen.
const _: () = {
    assert!(SHMQ_OK == code::OK);
    assert!(SHMQ_ERR_FULL == code::FULL);
    assert!(SHMQ_ERR_EMPTY == code::EMPTY);
    assert!(SHMQ_ERR_TIMEOUT == code::TIMEOUT);
    assert!(SHMQ_ERR_TOO_LARGE == code::TOO_LARGE);
    assert!(SHMQ_ERR_BUFFER_TOO_SMALL == code::BUFFER_TOO_SMALL);
    assert!(SHMQ_ERR_NOT_FOUND == code::NOT_FOUND);
    assert!(SHMQ_ERR_EXISTS == code::EXISTS);
    assert!(SHMQ_ERR_INVALID == code::INVALID);
    assert!(SHMQ_ERR_BUSY == code::BUSY);
    assert!(SHMQ_ERR_PERMISSION == code::PERMISSION);
    assert!(SHMQ_ERR_CORRUPT == code::CORRUPT);
    assert!(SHMQ_ERR_INCOMPATIBLE == code::INCOMPATIBLE);
    assert!(SHMQ_ERR_CLOSED == code::CLOSED);
    assert!(SHMQ_ERR_IO == code::IO);
    assert!(SHMQ_ERR_INTERNAL == code::INTERNAL);
};

/// `shmq_options.mode`: one producer at a time (the fast path).
pub const SHMQ_MODE_SPSC: c_int = 1;
/// `shmq_options.mode`: up to 63 producers at once (the default).
pub const SHMQ_MODE_MPSC: c_int = 2;

/// Wait policy: busy-poll. The lowest latency; one core at 100% while waiting.
pub const SHMQ_WAIT_SPIN: c_int = 1;
/// Wait policy: sleep on a futex at once. No CPU while waiting; a wakeup costs microseconds.
pub const SHMQ_WAIT_BLOCK: c_int = 2;
/// Wait policy: spin for up to 50 microseconds, then sleep (the default of every handle).
pub const SHMQ_WAIT_ADAPTIVE: c_int = 3;

/// Default `shmq_options.capacity`: 1 MiB.
pub const SHMQ_DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default `shmq_options.max_message`: 64 KiB.
pub const SHMQ_DEFAULT_MAX_MESSAGE: u32 = 64 << 10;
/// Default `shmq_options.permissions`: `0600`, owner read and write.
pub const SHMQ_DEFAULT_PERMISSIONS: u32 = 0o600;

const _: () = {
    assert!(SHMQ_DEFAULT_CAPACITY == shmq_core::DEFAULT_CAPACITY);
    assert!(SHMQ_DEFAULT_MAX_MESSAGE == shmq_core::DEFAULT_MAX_MESSAGE);
    assert!(SHMQ_DEFAULT_PERMISSIONS == shmq_core::DEFAULT_PERMISSIONS);
};

/// Options for `shmq_create` and `shmq_open_or_create`. Always start from
/// `shmq_options_init`, then change the fields you need:
///
/// ```c
/// shmq_options o;
/// shmq_options_init(&o);
/// o.capacity = 1 << 16;
/// o.mode = SHMQ_MODE_SPSC;
/// int rc = shmq_create("orders", &o);
/// ```
///
/// The struct only grows: later versions append fields after `reserved`, and `size` tells
/// the library which fields the caller knows.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shmq_options {
    /// `sizeof(shmq_options)` as the caller compiled it; set by `shmq_options_init`. A size
    /// below this version's struct (32 bytes) is `SHMQ_ERR_INVALID`.
    pub size: usize,
    /// Bytes in the data region: a power of two from 1 KiB to 1 TiB, not rounded.
    /// Each message takes 8 header bytes plus its length rounded up to 8.
    pub capacity: u64,
    /// Largest message in bytes: at most half the capacity.
    pub max_message: u32,
    /// `SHMQ_MODE_SPSC` or `SHMQ_MODE_MPSC`.
    pub mode: c_int,
    /// Permission bits of the shared-memory object, e.g. `0660` for group access; must
    /// include `0600`. Applied exactly (the umask does not apply).
    pub permissions: u32,
    /// Must be 0 (`shmq_options_init` sets it).
    pub reserved: u32,
}

/// The size of the first version of `shmq_options`.
const OPTIONS_V1_SIZE: usize = std::mem::size_of::<shmq_options>();
/// Larger sizes are surely garbage (an uninitialised struct): refuse them rather than read
/// that far.
const OPTIONS_MAX_SIZE: usize = 4096;
const _: () = assert!(OPTIONS_V1_SIZE == 32);

/// A producer handle: appends messages to one queue. Opaque; from `shmq_producer_open`,
/// freed by `shmq_producer_close`.
pub struct shmq_producer {
    inner: Producer,
    /// The reservation made by `shmq_reserve`, until `shmq_commit` or `shmq_abort`.
    grant: Option<RawGrant>,
}

/// A consumer handle: takes the messages of one queue, in order. Opaque; from
/// `shmq_consumer_open`, freed by `shmq_consumer_close`.
pub struct shmq_consumer {
    inner: Consumer,
    /// `shmq_peek` returned the head message and `shmq_release` has not taken it yet.
    peeked: bool,
}

/// A C error code on its way out; `?` converts a Rust error into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code(c_int);

impl From<Error> for Code {
    fn from(e: Error) -> Code {
        Code(e.code())
    }
}

const INVALID: Code = Code(SHMQ_ERR_INVALID);

type Res<T = ()> = Result<T, Code>;

/// Restores the caller's `errno` when dropped.
struct ErrnoGuard(c_int);

impl ErrnoGuard {
    fn save() -> ErrnoGuard {
        // SAFETY: `__errno_location` returns the calling thread's errno, valid for reads
        // and writes for as long as the thread lives.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

/// Runs the body of an exported function: `errno` preserved, panics caught, the result
/// turned into a C code.
fn guard(f: impl FnOnce() -> Res) -> c_int {
    let _errno = ErrnoGuard::save();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SHMQ_OK,
        Ok(Err(Code(c))) => c,
        Err(_) => SHMQ_ERR_INTERNAL,
    }
}

/// [`guard`] for the functions that return nothing: a panic is swallowed.
fn guard_void(f: impl FnOnce()) {
    let _errno = ErrnoGuard::save();
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// How long a call may wait, from a C timeout in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    /// `0`: try once.
    Try,
    /// Negative: wait forever.
    Forever,
    /// Positive: at most this long.
    For(Duration),
}

fn timeout(ns: i64) -> Timeout {
    match ns {
        0 => Timeout::Try,
        n if n < 0 => Timeout::Forever,
        n => Timeout::For(Duration::from_nanos(n as u64)),
    }
}

fn wait_policy(w: c_int) -> Res<Wait> {
    match w {
        SHMQ_WAIT_SPIN => Ok(Wait::Spin),
        SHMQ_WAIT_BLOCK => Ok(Wait::Block),
        SHMQ_WAIT_ADAPTIVE => Ok(Wait::Adaptive),
        _ => Err(INVALID),
    }
}

/// The queue name behind a C string: NULL or not UTF-8 is `SHMQ_ERR_INVALID` (the Rust
/// crate checks the characters).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string that lives for `'a`.
unsafe fn name_arg<'a>(name: *const c_char) -> Res<&'a str> {
    if name.is_null() {
        return Err(INVALID);
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str().map_err(|_| INVALID)
}

/// The Rust options from a C `shmq_options`, reading only the fields its `size` covers.
///
/// # Safety
/// `o` is NULL or points to `o->size` readable bytes.
unsafe fn options_arg(o: *const shmq_options) -> Res<Options> {
    if o.is_null() {
        return Err(INVALID);
    }
    // SAFETY: `size` is the first field, and every caller's struct has it.
    let size = unsafe { std::ptr::addr_of!((*o).size).read_unaligned() };
    if !(OPTIONS_V1_SIZE..=OPTIONS_MAX_SIZE).contains(&size) {
        return Err(INVALID);
    }
    // SAFETY: the caller's struct has at least the v1 fields (its size says so).
    let v1 = unsafe { o.read_unaligned() };
    // A caller that knows fields this library does not: refuse unless they are zero
    // (their meaning would be ignored otherwise).
    // SAFETY: the caller vouches for `size` readable bytes.
    let all = unsafe { std::slice::from_raw_parts(o.cast::<u8>(), size) };
    if all[OPTIONS_V1_SIZE..].iter().any(|&b| b != 0) || v1.reserved != 0 {
        return Err(INVALID);
    }
    let mode = match v1.mode {
        SHMQ_MODE_SPSC => Mode::Spsc,
        SHMQ_MODE_MPSC => Mode::Mpsc,
        _ => return Err(INVALID),
    };
    Ok(Options::new().capacity(v1.capacity).max_message(v1.max_message).mode(mode).permissions(v1.permissions))
}

/// Writes `value` through `out` if `out` is not NULL.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(value) };
    }
}

/// The handle behind a C pointer.
///
/// # Safety
/// `h` is NULL or a live handle from this library that no other thread is using.
unsafe fn handle<'a, T>(h: *mut T) -> Res<&'a mut T> {
    // SAFETY: by the caller's contract, a non-null `h` is a live, unshared handle.
    unsafe { h.as_mut() }.ok_or(INVALID)
}

/// Sets `*o` to the defaults (capacity 1 MiB, `max_message` 64 KiB, `SHMQ_MODE_MPSC`,
/// permissions `0600`) and `o->size` to `sizeof(shmq_options)` of this version (32). Does
/// nothing if `o` is NULL. Thread-safe; does not block.
///
/// This function writes exactly the 32 bytes of this version's struct, now and in later
/// versions: a version that appends fields adds an initializer that knows about them.
///
/// # Safety
/// `o` is NULL or points to a writable `shmq_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_options_init(o: *mut shmq_options) {
    guard_void(|| {
        let defaults = shmq_options {
            size: OPTIONS_V1_SIZE,
            capacity: SHMQ_DEFAULT_CAPACITY,
            max_message: SHMQ_DEFAULT_MAX_MESSAGE,
            mode: SHMQ_MODE_MPSC,
            permissions: SHMQ_DEFAULT_PERMISSIONS,
            reserved: 0,
        };
        if !o.is_null() {
            // SAFETY: non-null and writable by the caller's contract; unaligned-safe.
            unsafe { o.write_unaligned(defaults) };
        }
    })
}

/// The `SHMQ_ABI_VERSION` this library was built with: compare it with the header's to
/// detect a program compiled against another major version. Thread-safe; does not block.
///
/// # Safety
/// None: any thread may call it at any time.
#[unsafe(no_mangle)]
pub extern "C" fn shmq_abi_version() -> c_int {
    SHMQ_ABI_VERSION
}

/// Creates the queue `name` (1–200 bytes of `[A-Za-z0-9._-]`, not starting with `.`) as
/// the POSIX shared-memory object `/shmq.<name>`, with the options `o`. Its memory is
/// reserved now: a full `/dev/shm` fails here, not later.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_EXISTS` if the name is taken; `SHMQ_ERR_INVALID` for a
/// NULL `name` or `o`, a bad name, or bad options; `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`.
/// Thread-safe; does not block.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `o` is NULL or points to `o->size` readable
/// bytes (a `shmq_options` set up by `shmq_options_init`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_create(name: *const c_char, o: *const shmq_options) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (name, options) = unsafe { (name_arg(name)?, options_arg(o)?) };
        Queue::create(name, options)?;
        Ok(())
    })
}

/// Opens the queue `name` if it exists, creates it with the options `o` otherwise. An
/// existing queue must have the same mode, capacity and `max_message`
/// (`SHMQ_ERR_INVALID` otherwise). A queue left unfinished by a creator that died is
/// replaced. Errors as `shmq_create`, but never `SHMQ_ERR_EXISTS`. Thread-safe; may wait
/// up to 2 seconds for a queue another process is creating at that moment.
///
/// # Safety
/// As `shmq_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_open_or_create(name: *const c_char, o: *const shmq_options) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let (name, options) = unsafe { (name_arg(name)?, options_arg(o)?) };
        Queue::open_or_create(name, options)?;
        Ok(())
    })
}

/// Removes the queue `name`: unlinks the name, marks the queue closed and wakes every
/// waiter. Handles still open keep working on the memory: producers then get
/// `SHMQ_ERR_CLOSED`; the consumer receives what is left, then gets `SHMQ_ERR_CLOSED`.
/// The memory is freed when the last handle is closed.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_INVALID` for a NULL or bad name;
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`. Thread-safe; does not block.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_remove(name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        Queue::remove(name)?;
        Ok(())
    })
}

/// Opens a producer on the queue `name` and stores it in `*out` (NULL on failure). The
/// handle waits adaptively (`SHMQ_WAIT_ADAPTIVE`) until `shmq_producer_set_wait`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_BUSY` if the queue is SPSC and a
/// live process already produces, or 63 producers are attached; `SHMQ_ERR_INVALID` for a
/// NULL `out` or a NULL or bad name; `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`,
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO`.
///
/// Ownership: the caller owns the handle and frees it with `shmq_producer_close`.
/// Threads: a handle may move between threads but must be used by one thread at a time;
/// different handles are independent. Processes: a handle does not survive `fork()`: the
/// child must neither use nor close its parent's handles, and opens its own.
/// Blocking: may wait up to 2 seconds for a queue another process is creating.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or valid for a write of a
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_open(name: *const c_char, out: *mut *mut shmq_producer) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null `out` is writable by the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        let inner = Producer::open(name)?;
        let h = Box::into_raw(Box::new(shmq_producer { inner, grant: None }));
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Opens the consumer of the queue `name` and stores it in `*out` (NULL on failure). The
/// handle waits adaptively (`SHMQ_WAIT_ADAPTIVE`) until `shmq_consumer_set_wait`.
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_NOT_FOUND`; `SHMQ_ERR_BUSY` while another live process
/// (a stopped one included) is the consumer; the slot of a dead one is taken over.
/// `SHMQ_ERR_INVALID`, `SHMQ_ERR_CORRUPT`, `SHMQ_ERR_INCOMPATIBLE`,
/// `SHMQ_ERR_PERMISSION`, `SHMQ_ERR_IO` as for `shmq_producer_open`.
///
/// Ownership, threads, processes and blocking: as for `shmq_producer_open`; free the
/// handle with `shmq_consumer_close`.
///
/// # Safety
/// As `shmq_producer_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_open(name: *const c_char, out: *mut *mut shmq_consumer) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null `out` is writable by the caller's contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let name = unsafe { name_arg(name)? };
        let inner = Consumer::open(name)?;
        let h = Box::into_raw(Box::new(shmq_consumer { inner, peeked: false }));
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Sets how the producer waits when the queue is full: `SHMQ_WAIT_SPIN`,
/// `SHMQ_WAIT_BLOCK` or `SHMQ_WAIT_ADAPTIVE`. `SHMQ_ERR_INVALID` for a NULL handle or
/// another value. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_set_wait(p: *mut shmq_producer, wait: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        p.inner.set_wait(wait_policy(wait)?);
        Ok(())
    })
}

/// Sets how the consumer waits when the queue is empty: `SHMQ_WAIT_SPIN`,
/// `SHMQ_WAIT_BLOCK` or `SHMQ_WAIT_ADAPTIVE`. `SHMQ_ERR_INVALID` for a NULL handle or
/// another value. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_set_wait(c: *mut shmq_consumer, wait: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { handle(c)? };
        c.inner.set_wait(wait_policy(wait)?);
        Ok(())
    })
}

/// Stores the queue's `max_message` in `*out`: the largest message a producer may send, and
/// so the receive buffer that always suffices. `SHMQ_ERR_INVALID` for a NULL argument.
/// Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_max_message(p: *mut shmq_producer, out: *mut u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        if out.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(p.inner.config().max_message) };
        Ok(())
    })
}

/// Stores the queue's `max_message` in `*out`. As `shmq_producer_max_message`.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_max_message(c: *mut shmq_consumer, out: *mut u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { handle(c)? };
        if out.is_null() {
            return Err(INVALID);
        }
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { out.write(c.inner.config().max_message) };
        Ok(())
    })
}

/// Closes the producer and frees the handle; NULL is ignored. An outstanding reservation
/// is aborted first (nothing of it reaches the consumer). Messages already sent stay in
/// the queue. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using; it is invalid
/// afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_producer_close(p: *mut shmq_producer) {
    guard_void(|| {
        if p.is_null() {
            return;
        }
        // SAFETY: a live handle from `shmq_producer_open` (a leaked Box), given back.
        let mut p = unsafe { Box::from_raw(p) };
        if let Some(g) = p.grant.take() {
            let _ = p.inner.abort_raw(g);
        }
    })
}

/// Closes the consumer and frees the handle; NULL is ignored. A message peeked and not
/// released stays in the queue for the next consumer. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using; it is invalid
/// afterwards, and so is any pointer `shmq_peek` returned through it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_consumer_close(c: *mut shmq_consumer) {
    guard_void(|| {
        if !c.is_null() {
            // SAFETY: a live handle from `shmq_consumer_open` (a leaked Box), given back.
            drop(unsafe { Box::from_raw(c) });
        }
    })
}

/// Sends the `len` bytes at `data` (a copy; `len` may be 0, and `data` may then be NULL).
///
/// `timeout_ns`: while the queue is full, `0` gives up at once (`SHMQ_ERR_FULL`), a
/// negative value waits forever, a positive one waits at most that long
/// (`SHMQ_ERR_TIMEOUT`). Waiting follows the handle's policy (`shmq_producer_set_wait`).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_FULL`, `SHMQ_ERR_TIMEOUT`; `SHMQ_ERR_TOO_LARGE` if
/// `len` exceeds the queue's `max_message`; `SHMQ_ERR_CLOSED` once the queue was
/// removed; `SHMQ_ERR_INVALID` for a NULL handle, NULL `data` with a non-zero `len`, or
/// a reservation outstanding (`shmq_reserve` without `shmq_commit`/`shmq_abort`);
/// `SHMQ_ERR_CORRUPT`.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using; `data` is NULL or
/// points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_send(p: *mut shmq_producer, data: *const c_void, len: usize, timeout_ns: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        if data.is_null() && len > 0 {
            return Err(INVALID);
        }
        // Checked before the slice is made: a slice above `isize::MAX` bytes is undefined
        // behaviour even unread, and `max_message` is at most 1 GiB.
        if len > p.inner.config().max_message as usize {
            return Err(Code(SHMQ_ERR_TOO_LARGE));
        }
        if p.grant.is_some() {
            return Err(INVALID);
        }
        let msg: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `len` readable bytes at the non-null `data`, by the caller's contract;
            // `len` is at most `max_message`, far below `isize::MAX`.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
        };
        match timeout(timeout_ns) {
            Timeout::Try => p.inner.try_send(msg)?,
            Timeout::Forever => p.inner.send(msg)?,
            Timeout::For(d) => p.inner.send_timeout(msg, d)?,
        }
        Ok(())
    })
}

/// Reserves `len` bytes in the ring for zero-copy writing and stores their address in
/// `*buf` (NULL on failure). Write the message there, then publish it with `shmq_commit`
/// (or `shmq_commit_len` for fewer bytes), or drop it with `shmq_abort`. Until then the
/// producer accepts no other `shmq_send` or `shmq_reserve` (`SHMQ_ERR_INVALID`), and on
/// an MPSC queue the consumer cannot read past it: finish it soon.
///
/// The `len` bytes at `*buf` are shared memory, valid until the commit, abort or close;
/// they start with whatever was there before. `timeout_ns` and errors as `shmq_send`.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using; `buf` is NULL or
/// valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_reserve(
    p: *mut shmq_producer,
    len: usize,
    buf: *mut *mut c_void,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { put(buf, std::ptr::null_mut()) };
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        if buf.is_null() || p.grant.is_some() {
            return Err(INVALID);
        }
        let grant = match timeout(timeout_ns) {
            Timeout::Try => p.inner.try_reserve(len)?,
            Timeout::Forever => p.inner.reserve(len)?,
            Timeout::For(d) => p.inner.reserve_timeout(len, d)?,
        }
        .into_raw();
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { buf.write(grant.as_mut_ptr().cast()) };
        p.grant = Some(grant);
        Ok(())
    })
}

/// Publishes the reservation made by `shmq_reserve`, all of its bytes, and wakes the
/// consumer if it sleeps. `SHMQ_ERR_INVALID` for a NULL handle or no reservation
/// outstanding. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit(p: *mut shmq_producer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        let len = p.grant.as_ref().ok_or(INVALID)?.len();
        commit(p, len)
    })
}

/// Publishes the first `len` bytes of the reservation made by `shmq_reserve`
/// (`len` ≤ the reserved length; the rest is skipped). `SHMQ_ERR_INVALID` for a NULL
/// handle, no reservation outstanding, or a `len` above the reserved length (the
/// reservation then stays outstanding). Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_commit_len(p: *mut shmq_producer, len: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        commit(p, len)
    })
}

fn commit(p: &mut shmq_producer, len: usize) -> Res {
    match &p.grant {
        Some(g) if len <= g.len() => {}
        _ => return Err(INVALID),
    }
    let g = p.grant.take().ok_or(INVALID)?;
    p.inner.commit_raw(g, len)?;
    Ok(())
}

/// Drops the reservation made by `shmq_reserve`: nothing of it reaches the consumer.
/// `SHMQ_ERR_INVALID` for a NULL handle or no reservation outstanding. Does not block.
///
/// # Safety
/// `p` is NULL or an open producer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_abort(p: *mut shmq_producer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p)? };
        let g = p.grant.take().ok_or(INVALID)?;
        p.inner.abort_raw(g)?;
        Ok(())
    })
}

/// Receives the next message into `buf` (`cap` bytes) and stores its length in `*len`.
///
/// If the message is longer than `cap`, returns `SHMQ_ERR_BUFFER_TOO_SMALL`, stores the
/// size needed in `*len` and leaves the message in the queue: call again with a larger
/// buffer (the queue's `max_message` always suffices: `shmq_consumer_max_message`).
/// A message peeked with `shmq_peek` and not yet released is the one received; the
/// pointer `shmq_peek` gave is then invalid.
///
/// `timeout_ns`: while the queue is empty, `0` gives up at once (`SHMQ_ERR_EMPTY`), a
/// negative value waits forever, a positive one at most that long (`SHMQ_ERR_TIMEOUT`).
/// Waiting follows the handle's policy (`shmq_consumer_set_wait`).
///
/// Returns `SHMQ_OK`; `SHMQ_ERR_EMPTY`, `SHMQ_ERR_TIMEOUT`, `SHMQ_ERR_BUFFER_TOO_SMALL`;
/// `SHMQ_ERR_CLOSED` once the queue was removed and everything in it received (a waiting
/// call returns it at once when the queue is removed); `SHMQ_ERR_INVALID` for a NULL
/// handle or `len`, or a NULL `buf` with a non-zero `cap`; `SHMQ_ERR_CORRUPT`.
/// `*len` is 0 after any other error.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using; `buf` is NULL or
/// points to `cap` writable bytes; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_recv(
    c: *mut shmq_consumer,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { put(len, 0) };
        // SAFETY: the caller's contract.
        let c = unsafe { handle(c)? };
        if len.is_null() || (buf.is_null() && cap > 0) {
            return Err(INVALID);
        }
        let msg = peek(c, timeout_ns)?;
        let n = msg.len();
        // SAFETY: `len` is non-null and writable by the caller's contract.
        unsafe { len.write(n) };
        if n > cap {
            return Err(Code(SHMQ_ERR_BUFFER_TOO_SMALL));
        }
        if n > 0 {
            // SAFETY: `buf` holds `cap >= n` writable bytes (the caller's contract; non-null
            // since `cap > 0`); `msg` is `n` readable bytes of the mapping, which does not
            // overlap the caller's buffer (a private allocation or another mapping).
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n) };
        }
        release(c)
    })
}

/// Shows the next message without taking it: stores its address in `*data` and its length
/// in `*len`. The `*len` bytes at `*data` are valid until `shmq_release` (which takes the
/// message), `shmq_recv` or `shmq_consumer_close`; do not write them. Peeking again
/// before releasing shows the same message. On failure `*data` is NULL and `*len` 0.
///
/// `timeout_ns` and errors as `shmq_recv` (without `SHMQ_ERR_BUFFER_TOO_SMALL`);
/// `SHMQ_ERR_INVALID` also for a NULL `data` or `len`.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using; `data` and `len`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_peek(
    c: *mut shmq_consumer,
    data: *mut *const c_void,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe {
            put(data, std::ptr::null());
            put(len, 0);
        }
        // SAFETY: the caller's contract.
        let c = unsafe { handle(c)? };
        if data.is_null() || len.is_null() {
            return Err(INVALID);
        }
        let msg = peek(c, timeout_ns)?;
        let (p, n) = (msg.as_ptr(), msg.len());
        c.peeked = true;
        // SAFETY: non-null and writable by the caller's contract.
        unsafe {
            data.write(p.cast());
            len.write(n);
        }
        Ok(())
    })
}

/// The head message, waiting by `timeout_ns`.
fn peek(c: &mut shmq_consumer, timeout_ns: i64) -> Res<&[u8]> {
    Ok(match timeout(timeout_ns) {
        Timeout::Try => c.inner.try_peek()?.ok_or(Code(SHMQ_ERR_EMPTY))?,
        Timeout::Forever => c.inner.peek(None)?,
        Timeout::For(d) => c.inner.peek(Some(d))?,
    })
}

/// Takes the message shown by `shmq_peek`: its space goes back to the producers and the
/// pointer `shmq_peek` gave becomes invalid. `SHMQ_ERR_INVALID` for a NULL handle or no
/// peeked message. Does not block.
///
/// # Safety
/// `c` is NULL or an open consumer handle that no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmq_release(c: *mut shmq_consumer) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { handle(c)? };
        if !c.peeked {
            return Err(INVALID);
        }
        release(c)
    })
}

/// Takes the head message, which the caller has just peeked.
fn release(c: &mut shmq_consumer) -> Res {
    c.peeked = false;
    if c.inner.advance()? {
        Ok(())
    } else {
        // The message we saw is gone: only a process writing into the segment can do that.
        Err(Code(SHMQ_ERR_CORRUPT))
    }
}

/// A static, NUL-terminated English description of the code `err`: for every `int`,
/// known or not. Never NULL; do not free it. Thread-safe; does not block.
///
/// # Safety
/// None: any thread may call it with any value.
#[unsafe(no_mangle)]
pub extern "C" fn shmq_strerror(err: c_int) -> *const c_char {
    let s: &'static CStr = match err {
        SHMQ_OK => c"success",
        SHMQ_ERR_FULL => c"queue is full",
        SHMQ_ERR_EMPTY => c"queue is empty",
        SHMQ_ERR_TIMEOUT => c"timed out",
        SHMQ_ERR_TOO_LARGE => c"message exceeds the queue's max_message",
        SHMQ_ERR_BUFFER_TOO_SMALL => c"buffer too small for the message (*len holds the size needed)",
        SHMQ_ERR_NOT_FOUND => c"no such queue",
        SHMQ_ERR_EXISTS => c"a queue of that name already exists",
        SHMQ_ERR_INVALID => c"invalid argument, name, option or call order",
        SHMQ_ERR_BUSY => c"busy: slot held by a live process, or participant table full",
        SHMQ_ERR_PERMISSION => c"permission denied",
        SHMQ_ERR_CORRUPT => c"corrupt queue",
        SHMQ_ERR_INCOMPATIBLE => c"incompatible queue layout version",
        SHMQ_ERR_CLOSED => c"queue is closed",
        SHMQ_ERR_IO => c"operating-system error",
        SHMQ_ERR_INTERNAL => c"internal error in libshmq",
        _ => c"unknown shmq error code",
    };
    s.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> c_int {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    fn set_errno(v: c_int) {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = v };
    }

    #[test]
    fn a_panic_becomes_internal_and_errno_survives() {
        set_errno(libc::EAGAIN);
        let rc = guard(|| {
            set_errno(libc::ENOENT);
            panic!("boom (this panic is expected by the test)");
        });
        assert_eq!(rc, SHMQ_ERR_INTERNAL);
        assert_eq!(errno(), libc::EAGAIN);
    }

    #[test]
    fn a_panic_in_a_void_function_is_swallowed() {
        set_errno(libc::EINTR);
        guard_void(|| panic!("boom (this panic is expected by the test)"));
        assert_eq!(errno(), libc::EINTR);
    }

    #[test]
    fn errors_map_to_their_codes() {
        assert_eq!(guard(|| Err(Error::Full.into())), SHMQ_ERR_FULL);
        assert_eq!(guard(|| Err(Error::Closed.into())), SHMQ_ERR_CLOSED);
        assert_eq!(guard(|| Ok(())), SHMQ_OK);
    }

    #[test]
    fn timeouts_follow_the_sign_convention() {
        assert_eq!(timeout(0), Timeout::Try);
        assert_eq!(timeout(-1), Timeout::Forever);
        assert_eq!(timeout(i64::MIN), Timeout::Forever);
        assert_eq!(timeout(1), Timeout::For(Duration::from_nanos(1)));
        assert_eq!(timeout(i64::MAX), Timeout::For(Duration::from_nanos(i64::MAX as u64)));
    }

    #[test]
    fn strerror_answers_every_int() {
        for e in [i32::MIN, -16, -1, 0, 1, i32::MAX] {
            // SAFETY: shmq_strerror returns a static C string.
            let s = unsafe { CStr::from_ptr(shmq_strerror(e)) };
            assert!(!s.is_empty());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmq_strerror(-16)) };
        assert_eq!(unknown, c"unknown shmq error code");
    }
}
