//! The floors: what moving a message between two processes through shared memory costs with
//! no queue at all.
//!
//! A mapping of the bench's own (a POSIX shm object, unlinked as soon as both sides have
//! mapped it) holds one slot per direction, each on its own 128-byte lines:
//!
//! ```text
//! slot 0 (leader -> peer)      slot 1 (peer -> leader)
//! [seq u32][ack u32][payload]  [seq u32][ack u32][payload]
//! ```
//! `seq` counts the messages its owner published in its slot; `ack` counts the messages its
//! owner took from the *other* slot. Sending: copy the message into the payload, store
//! `seq` with Release. Receiving: wait until the other slot's `seq` reaches the next value
//! (Acquire), copy the payload out, store `ack`. The header sits right before the payload,
//! like a shmq record header, so a small message moves with the same cache lines.
//!
//! * `spin-floor` waits by spinning on the word.
//! * `futex-floor` sleeps at once in `FUTEX_WAIT` on the word, and the sender always calls
//!   `FUTEX_WAKE` after its store: no waiter count, no spinning, the bare cost of a wakeup.
//!   Shared futexes (no `FUTEX_PRIVATE_FLAG`): the word is in memory shared between
//!   processes, and a private futex would be keyed by one address space.
//!
//! In ping-pong a reply proves the previous message was taken, so the sender never waits
//! for `ack`. When streaming, the sender waits for the receiver's `ack` of the previous
//! message (one message in flight) and the futex floor's receiver wakes it.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;
use rustix::thread::futex;

use super::transports::Endpoint;
use super::{PEER_GONE, STUCK};

/// Size of a slot header: the `seq` and `ack` words.
const HEADER: usize = 8;
/// Slots start on this boundary (two cache lines: no false sharing with the adjacent-line
/// prefetcher).
const LINE: usize = 128;

/// The two words at the start of a slot.
#[repr(C)]
struct Header {
    /// Messages published in this slot by its owner.
    seq: AtomicU32,
    /// Messages its owner took from the other slot.
    ack: AtomicU32,
}

/// The shared mapping of a floor run.
pub struct FloorMap {
    ptr: NonNull<u8>,
    len: usize,
    stride: usize,
    size: usize,
    /// The shm object's name while it is still linked (the creator unlinks it).
    name: Option<String>,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only used through
// atomics and copies that the slot protocol orders.
unsafe impl Send for FloorMap {}

impl FloorMap {
    fn stride(size: usize) -> usize {
        (HEADER + size).div_ceil(LINE) * LINE
    }

    fn len_for(size: usize) -> usize {
        2 * Self::stride(size)
    }

    /// Creates and maps a new object `name` for messages of `size` bytes.
    pub fn create(name: &str, size: usize) -> Result<FloorMap> {
        let fd = shm::open(name, shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR, Mode::RUSR | Mode::WUSR)
            .with_context(|| format!("create shared memory {name}"))?;
        let mut map = FloorMap { ptr: NonNull::dangling(), len: 0, stride: 0, size, name: Some(name.to_owned()) };
        rustix::fs::ftruncate(&fd, Self::len_for(size) as u64).with_context(|| format!("size {name}"))?;
        map.map(&fd)?;
        Ok(map)
    }

    /// Maps the existing object `name` made for messages of `size` bytes.
    pub fn open(name: &str, size: usize) -> Result<FloorMap> {
        let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).with_context(|| format!("open {name}"))?;
        let st = rustix::fs::fstat(&fd).with_context(|| format!("stat {name}"))?;
        if (st.st_size as u64) < Self::len_for(size) as u64 {
            bail!("shared memory {name} is smaller than expected");
        }
        let mut map = FloorMap { ptr: NonNull::dangling(), len: 0, stride: 0, size, name: None };
        map.map(&fd)?;
        Ok(map)
    }

    fn map(&mut self, fd: &rustix::fd::OwnedFd) -> Result<()> {
        let len = Self::len_for(self.size);
        // SAFETY: a fresh shared mapping of an object at least `len` bytes long (checked or
        // sized by the caller); nothing else in this process refers to that address range.
        let p = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)
        }
        .context("map shared memory")?;
        self.ptr = NonNull::new(p.cast::<u8>()).context("mmap returned null")?;
        self.len = len;
        self.stride = Self::stride(self.size);
        Ok(())
    }

    /// Removes the name (both sides have mapped it by now).
    pub fn unlink(&mut self) {
        if let Some(n) = self.name.take() {
            let _ = shm::unlink(&n);
        }
    }

    fn header(&self, slot: usize) -> &Header {
        debug_assert!(slot < 2);
        // SAFETY: slot * stride is inside the mapping and 128-aligned (the mapping is
        // page-aligned), `Header` is two `AtomicU32`s that are valid for any bit pattern,
        // and the reference lives no longer than `self`, which keeps the mapping.
        unsafe { &*self.ptr.as_ptr().add(slot * self.stride).cast::<Header>() }
    }

    fn payload(&self, slot: usize) -> *mut u8 {
        // SAFETY: HEADER + size <= stride, so the payload of either slot is in the mapping.
        unsafe { self.ptr.as_ptr().add(slot * self.stride + HEADER) }
    }
}

impl Drop for FloorMap {
    fn drop(&mut self) {
        self.unlink();
        if self.len > 0 {
            // SAFETY: we mapped exactly this range and nothing borrows it any more (borrows
            // of headers are tied to `&self`).
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// One side of a floor run.
pub struct FloorEnd {
    map: FloorMap,
    /// The slot this side publishes in (and acks in).
    mine: usize,
    futex: bool,
    stream: bool,
    sent: u32,
    received: u32,
}

impl FloorEnd {
    /// The leader publishes in slot 0, the peer in slot 1.
    pub fn new(map: FloorMap, leader: bool, futex: bool) -> FloorEnd {
        FloorEnd { map, mine: if leader { 0 } else { 1 }, futex, stream: false, sent: 0, received: 0 }
    }

    /// Removes the object's name.
    pub fn unlink(&mut self) {
        self.map.unlink();
    }

    fn theirs(&self) -> usize {
        1 - self.mine
    }
}

/// Waits until `word` holds `want`: spinning, or sleeping in `FUTEX_WAIT`.
#[inline]
fn wait_until(word: &AtomicU32, want: u32, use_futex: bool) -> Result<()> {
    // SYNC POINT: Acquire pairs with the Release store of the word by the other process,
    // so the payload it wrote before is visible to our copy.
    if word.load(Ordering::Acquire) == want {
        return Ok(());
    }
    let start = Instant::now();
    if use_futex {
        let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        loop {
            // SYNC POINT: as above.
            let v = word.load(Ordering::Acquire);
            if v == want {
                return Ok(());
            }
            // Shared futex (no PRIVATE flag): the word is in a mapping shared between
            // processes. EAGAIN (changed already), EINTR, ETIMEDOUT: all mean re-check.
            let _ = futex::wait(word, futex::Flags::empty(), v, Some(&tick));
            if PEER_GONE.load(Ordering::Relaxed) || start.elapsed() > STUCK {
                bail!("the other process stopped answering");
            }
        }
    }
    let mut spins = 0u32;
    loop {
        // SYNC POINT: as above.
        if word.load(Ordering::Acquire) == want {
            return Ok(());
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % (1 << 16) == 0 && (PEER_GONE.load(Ordering::Relaxed) || start.elapsed() > STUCK) {
            bail!("the other process stopped answering");
        }
    }
}

impl Endpoint for FloorEnd {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if msg.len() != self.map.size {
            bail!("message of {} bytes in a floor of {}", msg.len(), self.map.size);
        }
        let (mine, theirs) = (self.mine, self.theirs());
        if self.stream {
            // One message in flight: the receiver must have taken the previous one.
            wait_until(&self.map.header(theirs).ack, self.sent, self.futex)?;
        }
        // SAFETY: the payload of our slot holds `size` bytes; the receiver reads it only
        // after our Release store below and is done with it (it acked, or replied) before
        // we write again, so nobody reads it while we copy.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.map.payload(mine), msg.len()) };
        self.sent = self.sent.wrapping_add(1);
        let h = self.map.header(mine);
        // SYNC POINT: Release pairs with the receiver's Acquire in `wait_until`.
        h.seq.store(self.sent, Ordering::Release);
        if self.futex {
            let _ = futex::wake(&h.seq, futex::Flags::empty(), 1);
        }
        Ok(())
    }

    #[inline]
    fn recv(&mut self, out: &mut [u8]) -> Result<()> {
        if out.len() != self.map.size {
            bail!("buffer of {} bytes in a floor of {}", out.len(), self.map.size);
        }
        let (mine, theirs) = (self.mine, self.theirs());
        let want = self.received.wrapping_add(1);
        wait_until(&self.map.header(theirs).seq, want, self.futex)?;
        // SAFETY: the other slot's payload holds `size` bytes, published (Acquire above)
        // and left alone by its writer until we ack or reply.
        unsafe { std::ptr::copy_nonoverlapping(self.map.payload(theirs), out.as_mut_ptr(), out.len()) };
        self.received = want;
        let h = self.map.header(mine);
        // SYNC POINT: Release pairs with the sender's Acquire of `ack` when streaming: our
        // copy is done before it may overwrite the payload.
        h.ack.store(want, Ordering::Release);
        if self.futex && self.stream {
            let _ = futex::wake(&h.ack, futex::Flags::empty(), 1);
        }
        Ok(())
    }

    fn start_stream(&mut self) -> Result<()> {
        self.stream = true;
        Ok(())
    }
}
