//! The floors: what moving a message between two processes through shared memory costs with
//! no queue at all.
//!
//! A mapping of the bench's own (a POSIX shm object, unlinked as soon as both sides have
//! mapped it) holds, for ping-pong, one slot per direction, each on its own 128-byte lines,
//! and after them, for streaming, a bare ring from the leader to the peer:
//!
//! ```text
//! slot 0 (leader -> peer)      slot 1 (peer -> leader)
//! [seq u32][ack u32][payload]  [seq u32][ack u32][payload]
//!
//! ring (leader -> peer)
//! [epoch u32] [tail u32] [consumer waits u32] [producer waits u32]  one 128-byte line each
//! [stamp u64][payload][stamp u64][payload] ...                       N records back to back
//! ```
//!
//! # Ping-pong (latency)
//! `seq` counts the messages its owner published in its slot; `ack` counts the messages its
//! owner took from the *other* slot. Sending: copy the message into the payload, store
//! `seq` with Release. Receiving: wait until the other slot's `seq` reaches the next value
//! (Acquire), copy the payload out, store `ack`. The header sits right before the payload,
//! like a shmq record header, so a small message moves with the same cache lines. A reply
//! proves the previous message was taken, so the sender never waits for `ack`.
//!
//! # Streaming (throughput)
//! The strongest simple single-producer/single-consumer ring we know for fixed-size messages,
//! with no queue machinery at all: N fixed-size records (N a power of two, at least as many
//! bytes as the shmq queue of the same run: 1 MiB, or 16 messages' worth when larger; 16384
//! records of 64 B, 32 of 64 KiB), each an 8-byte stamp and the payload, 8-byte aligned and
//! packed back to back (not padded to cache lines: 8-byte messages go four to a line).
//! * The stamp is one 64-bit word, the record's sequence number + 1 (32 bits) and the
//!   payload length (32 bits), stored by the producer with Release after it copied the
//!   payload in. The consumer learns that a record is there from its stamp (Acquire): it never
//!   reads the producer's position, and the producer publishes none. A slot holds either
//!   the stamp it expects or the one from the lap before, so nothing needs zeroing.
//! * `tail` (records the consumer took) sits on its own 128-byte line. The consumer stores
//!   it with Release once per batch (and at least every quarter of the ring); the producer
//!   keeps its last reading and reloads it (Acquire) only when that reading says the ring is
//!   full. So while the ring is neither full nor empty the two processes share no line but
//!   the records themselves.
//! * The producer copies the message in; the consumer copies it out and verifies it like
//!   every other transport.
//!
//! Fixed slots rather than variable-length records: every message of a run has the same
//! size, so variable-length records would be laid out byte for byte the same (stamp, payload,
//! 8-byte alignment) and would only add the wrap test and its padding record; fixed slots also
//! keep each stamp at a fixed offset, so a stale stamp is always a stamp, never payload of an
//! earlier lap. This is the bound on streaming through shared memory with the same copies:
//! what a queue's throughput is measured against.
//!
//! # Waiting
//! * `spin-floor` waits by spinning on the word.
//! * `futex-floor` sleeps at once in `FUTEX_WAIT`. In ping-pong it sleeps on the `seq` word
//!   and the sender always calls `FUTEX_WAKE` after its store: no waiter count, no spinning,
//!   the bare cost of a wakeup. In the ring a side that finds it empty (consumer) or full
//!   (producer) raises its waiter flag and sleeps; the other side wakes it only when the flag
//!   is up (a `SeqCst` fence on each side between its publication and the flag, the Dekker
//!   pattern that keeps a wakeup from being lost). The producer sleeps on `tail`; the
//!   consumer, which watches stamps rather than an index, sleeps on `epoch`, which the
//!   producer bumps before it wakes it. Shared futexes (no `FUTEX_PRIVATE_FLAG`): the words
//!   are in memory shared between processes, and a private futex would be keyed by one
//!   address space.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
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
/// Size of a ring record's header: the stamp.
const RECORD_HEADER: usize = 8;
/// The ring's control words: epoch, tail and the two waiter flags, a line each.
const RING_CONTROL: usize = 4 * LINE;
/// The ring holds at least this many records (and at least the bytes of the shmq queue it
/// is compared with).
const RING_MIN_SLOTS: usize = 16;

/// The two words at the start of a slot.
#[repr(C)]
struct Header {
    /// Messages published in this slot by its owner.
    seq: AtomicU32,
    /// Messages its owner took from the other slot.
    ack: AtomicU32,
}

/// Geometry of the mapping for messages of `size` bytes.
#[derive(Clone, Copy)]
struct Geometry {
    /// Distance between the two ping-pong slots.
    stride: usize,
    /// Offset of the ring's control lines (after the two slots).
    ring: usize,
    /// Distance between two ring records: length word + payload, rounded up to 8.
    record: usize,
    /// Records in the ring (a power of two).
    slots: usize,
    /// Bytes of the mapping.
    len: usize,
}

impl Geometry {
    fn of(size: usize) -> Geometry {
        let stride = (HEADER + size).div_ceil(LINE) * LINE;
        let record = (RECORD_HEADER + size).div_ceil(8) * 8;
        let bytes = super::transports::queue_capacity(size) as usize;
        let slots = bytes.div_ceil(record).max(RING_MIN_SLOTS).next_power_of_two();
        let ring = 2 * stride;
        Geometry { stride, ring, record, slots, len: ring + RING_CONTROL + slots * record }
    }
}

/// The shared mapping of a floor run.
pub struct FloorMap {
    ptr: NonNull<u8>,
    geo: Geometry,
    mapped: bool,
    size: usize,
    /// The shm object's name while it is still linked (the creator unlinks it).
    name: Option<String>,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only used through
// atomics and copies that the slot and ring protocols order.
unsafe impl Send for FloorMap {}

impl FloorMap {
    fn new(size: usize, name: Option<String>) -> FloorMap {
        FloorMap { ptr: NonNull::dangling(), geo: Geometry::of(size), mapped: false, size, name }
    }

    /// Creates and maps a new object `name` for messages of `size` bytes.
    pub fn create(name: &str, size: usize) -> Result<FloorMap> {
        let fd = shm::open(name, shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR, Mode::RUSR | Mode::WUSR)
            .with_context(|| format!("create shared memory {name}"))?;
        let mut map = FloorMap::new(size, Some(name.to_owned()));
        rustix::fs::ftruncate(&fd, map.geo.len as u64).with_context(|| format!("size {name}"))?;
        map.map(&fd)?;
        Ok(map)
    }

    /// Maps the existing object `name` made for messages of `size` bytes.
    pub fn open(name: &str, size: usize) -> Result<FloorMap> {
        let fd = shm::open(name, shm::OFlags::RDWR, Mode::empty()).with_context(|| format!("open {name}"))?;
        let st = rustix::fs::fstat(&fd).with_context(|| format!("stat {name}"))?;
        let mut map = FloorMap::new(size, None);
        if (st.st_size as u64) < map.geo.len as u64 {
            bail!("shared memory {name} is smaller than expected");
        }
        map.map(&fd)?;
        Ok(map)
    }

    fn map(&mut self, fd: &rustix::fd::OwnedFd) -> Result<()> {
        let len = self.geo.len;
        // POPULATE: the ring's pages are faulted in now rather than during the first stream.
        let flags = MapFlags::SHARED | MapFlags::POPULATE;
        // SAFETY: a fresh shared mapping of an object at least `len` bytes long (checked or
        // sized by the caller); nothing else in this process refers to that address range.
        let p =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, flags, fd, 0) }
                .context("map shared memory")?;
        self.ptr = NonNull::new(p.cast::<u8>()).context("mmap returned null")?;
        self.mapped = true;
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
        unsafe { &*self.ptr.as_ptr().add(slot * self.geo.stride).cast::<Header>() }
    }

    fn payload(&self, slot: usize) -> *mut u8 {
        // SAFETY: HEADER + size <= stride, so the payload of either slot is in the mapping.
        unsafe { self.ptr.as_ptr().add(slot * self.geo.stride + HEADER) }
    }

    /// Ring control word `i`: 0 epoch, 1 tail, 2 consumer waits, 3 producer waits.
    fn ring_word(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < 4);
        // SAFETY: the control lines are inside the mapping, each 128-aligned (`ring` is a
        // multiple of LINE and the mapping is page-aligned); an `AtomicU32` is valid for any
        // bit pattern and the reference lives no longer than `self`, which keeps the mapping.
        unsafe { &*self.ptr.as_ptr().add(self.geo.ring + i * LINE).cast::<AtomicU32>() }
    }

    /// A record's stamp word.
    #[inline]
    fn stamp(&self, rec: *mut u8) -> &AtomicU64 {
        // SAFETY: `rec` comes from `record`: 8-aligned, inside the mapping, starting with the
        // stamp; an `AtomicU64` is valid for any bit pattern and the reference lives no
        // longer than `self`, which keeps the mapping.
        unsafe { &*rec.cast::<AtomicU64>() }
    }

    /// Record `i` (taken modulo the number of records): its stamp, then the payload.
    #[inline]
    fn record(&self, i: u32) -> *mut u8 {
        let slot = i as usize & (self.geo.slots - 1);
        // SAFETY: slot < slots, so the record (record bytes) lies inside the mapping; it is
        // 8-aligned because `ring`, RING_CONTROL and `record` all are.
        unsafe { self.ptr.as_ptr().add(self.geo.ring + RING_CONTROL + slot * self.geo.record) }
    }
}

impl Drop for FloorMap {
    fn drop(&mut self) {
        self.unlink();
        if self.mapped {
            // SAFETY: we mapped exactly this range and nothing borrows it any more (borrows
            // of headers and control words are tied to `&self`).
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.geo.len) };
        }
    }
}

/// Ring control words.
const EPOCH: usize = 0;
const TAIL: usize = 1;
const CONSUMER_WAITS: usize = 2;
const PRODUCER_WAITS: usize = 3;

/// The consumer publishes `tail` at least this often within a batch, in fractions of the ring.
const TAIL_EVERY_FRACTION: usize = 4;

/// A record's stamp: sequence number + 1 (low half) and payload length (high half).
#[inline]
fn stamp_of(index: u32, len: usize) -> u64 {
    ((len as u64) << 32) | u64::from(index.wrapping_add(1))
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
    /// Ring, producer side (the leader): records published, and the consumer's `tail` as
    /// last read.
    head: u32,
    tail_seen: u32,
    /// Ring, consumer side (the peer): records taken, and the value of `tail` last stored.
    tail: u32,
    tail_published: u32,
}

impl FloorEnd {
    /// The leader publishes in slot 0, the peer in slot 1; the leader produces into the
    /// ring, the peer consumes.
    pub fn new(map: FloorMap, leader: bool, futex: bool) -> FloorEnd {
        FloorEnd {
            map,
            mine: if leader { 0 } else { 1 },
            futex,
            stream: false,
            sent: 0,
            received: 0,
            head: 0,
            tail_seen: 0,
            tail: 0,
            tail_published: 0,
        }
    }

    /// Removes the object's name.
    pub fn unlink(&mut self) {
        self.map.unlink();
    }

    fn theirs(&self) -> usize {
        1 - self.mine
    }

    /// Ring: copies `msg` into the next record and stamps it, waiting while the ring is full.
    #[inline]
    fn push(&mut self, msg: &[u8]) -> Result<()> {
        let slots = self.map.geo.slots as u32;
        if self.head.wrapping_sub(self.tail_seen) == slots {
            // Looks full: only now re-read the consumer's index.
            let head = self.head;
            let (tail, waits) = (self.map.ring_word(TAIL), self.map.ring_word(PRODUCER_WAITS));
            self.tail_seen = wait_for(tail, waits, self.futex, |t| head.wrapping_sub(t) != slots)?;
        }
        let rec = self.map.record(self.head);
        // SAFETY: the record holds RECORD_HEADER + size bytes (size == msg.len(), checked by
        // the caller) and is 8-aligned. It is free: the consumer's `tail` (Acquire in
        // `wait_for`) says it took this record's previous message, and it reads the payload
        // again only after our Release store of the stamp below.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), rec.add(RECORD_HEADER), msg.len()) };
        // SYNC POINT: Release pairs with the consumer's Acquire load of the stamp: the
        // payload written above is visible before the stamp that publishes it.
        self.map.stamp(rec).store(stamp_of(self.head, msg.len()), Ordering::Release);
        self.head = self.head.wrapping_add(1);
        if self.futex {
            // SYNC POINT: SeqCst fence between our stamp store and our load of the flag,
            // paired with the consumer's fence between raising the flag and re-reading the
            // stamp: one of us sees the other's store, so no wakeup is lost.
            fence(Ordering::SeqCst);
            if self.map.ring_word(CONSUMER_WAITS).load(Ordering::Relaxed) != 0 {
                let epoch = self.map.ring_word(EPOCH);
                // Release: a consumer that sees the new epoch also sees the stamp (it
                // re-reads the stamp after waking anyway).
                epoch.fetch_add(1, Ordering::Release);
                let _ = futex::wake(epoch, futex::Flags::empty(), 1);
            }
        }
        Ok(())
    }

    /// Ring, consumer: stores `tail` and, with futexes, wakes a producer that sleeps on it.
    #[inline]
    fn publish_tail(&mut self) {
        self.tail_published = self.tail;
        let tail = self.map.ring_word(TAIL);
        // SYNC POINT: Release pairs with the producer's Acquire load of `tail`: our copies
        // out of the records below it are done before it may write them again.
        tail.store(self.tail, Ordering::Release);
        if self.futex {
            // SYNC POINT: SeqCst fence between our store of `tail` and our load of the flag,
            // paired with the producer's fence between raising the flag and re-reading
            // `tail` (in `wait_for`).
            fence(Ordering::SeqCst);
            if self.map.ring_word(PRODUCER_WAITS).load(Ordering::Relaxed) != 0 {
                let _ = futex::wake(tail, futex::Flags::empty(), 1);
            }
        }
    }

    /// Ring: waits until record `self.tail` is stamped (spinning, or sleeping on `epoch`
    /// with the waiter flag raised).
    fn wait_stamp(&mut self, rec: *mut u8) -> Result<u64> {
        let want = self.tail.wrapping_add(1);
        let stamp = self.map.stamp(rec);
        let ready = |v: u64| v as u32 == want;
        let start = Instant::now();
        if self.futex {
            let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
            let (epoch, waits) = (self.map.ring_word(EPOCH), self.map.ring_word(CONSUMER_WAITS));
            loop {
                // Acquire: read before raising the flag (a later bump makes FUTEX_WAIT return
                // at once); pairs with the producer's Release bump.
                let e = epoch.load(Ordering::Acquire);
                waits.store(1, Ordering::Relaxed);
                // SYNC POINT: SeqCst fence between raising the flag and re-reading the stamp,
                // paired with the producer's fence after its stamp store (see `push`).
                fence(Ordering::SeqCst);
                // SYNC POINT: Acquire pairs with the producer's Release store of the stamp.
                let v = stamp.load(Ordering::Acquire);
                if ready(v) {
                    waits.store(0, Ordering::Relaxed);
                    return Ok(v);
                }
                // Shared futex; EAGAIN (bumped already), EINTR, ETIMEDOUT: all mean re-check.
                let _ = futex::wait(epoch, futex::Flags::empty(), e, Some(&tick));
                waits.store(0, Ordering::Relaxed);
                if PEER_GONE.load(Ordering::Relaxed) || start.elapsed() > STUCK {
                    bail!("the other process stopped answering");
                }
            }
        }
        let mut spins = 0u32;
        loop {
            std::hint::spin_loop();
            // SYNC POINT: Acquire pairs with the producer's Release store of the stamp.
            let v = stamp.load(Ordering::Acquire);
            if ready(v) {
                return Ok(v);
            }
            spins = spins.wrapping_add(1);
            if spins % (1 << 16) == 0 && (PEER_GONE.load(Ordering::Relaxed) || start.elapsed() > STUCK) {
                bail!("the other process stopped answering");
            }
        }
    }

    /// Ring: takes at least one and at most `max` records, copying each into `out` and
    /// calling `f` on it (false: corrupted), waiting while the ring is empty.
    #[inline]
    fn take(&mut self, out: &mut [u8], max: u64, mut f: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        let max = max.max(1);
        let every = (self.map.geo.slots / TAIL_EVERY_FRACTION).max(1) as u32;
        let mut n = 0u64;
        while n < max {
            let rec = self.map.record(self.tail);
            // SYNC POINT: Acquire pairs with the producer's Release store of the stamp: the
            // payload it copied in before is visible to our copy out.
            let mut v = self.map.stamp(rec).load(Ordering::Acquire);
            if v as u32 != self.tail.wrapping_add(1) {
                if n > 0 {
                    break;
                }
                // Empty: make what we took visible before waiting (the producer may be full).
                if self.tail != self.tail_published {
                    self.publish_tail();
                }
                v = self.wait_stamp(rec)?;
            }
            let len = (v >> 32) as usize;
            if len != out.len() {
                bail!("streamed record of {len} bytes, expected {}", out.len());
            }
            // SAFETY: the record was stamped by the producer's Release store that our Acquire
            // load saw, and it will not be rewritten before our store of `tail` covers it;
            // it holds RECORD_HEADER + size bytes; `out` is `size` bytes, not in the mapping.
            unsafe { std::ptr::copy_nonoverlapping(rec.add(RECORD_HEADER), out.as_mut_ptr(), out.len()) };
            self.tail = self.tail.wrapping_add(1);
            n += 1;
            if self.tail.wrapping_sub(self.tail_published) >= every {
                self.publish_tail();
            }
            if !f(out) {
                bail!("streamed message corrupted");
            }
        }
        self.publish_tail();
        Ok(n)
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

/// Ring: waits until the other side's index `word` satisfies `ready` and returns it:
/// spinning, or (futex) raising the waiter flag `waits` and sleeping in `FUTEX_WAIT`.
#[inline]
fn wait_for(word: &AtomicU32, waits: &AtomicU32, use_futex: bool, ready: impl Fn(u32) -> bool) -> Result<u32> {
    // SYNC POINT: Acquire pairs with the other side's Release store of its index: the
    // records it wrote (producer) or finished reading (consumer) before are settled.
    let v = word.load(Ordering::Acquire);
    if ready(v) {
        return Ok(v);
    }
    let start = Instant::now();
    if use_futex {
        let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        loop {
            waits.store(1, Ordering::Relaxed);
            // SYNC POINT: SeqCst fence between raising the flag and re-reading the index,
            // paired with the other side's fence between its index store and its load of
            // the flag: either it sees the flag and wakes us, or we see its new index.
            fence(Ordering::SeqCst);
            // SYNC POINT: Acquire, as above.
            let v = word.load(Ordering::Acquire);
            if ready(v) {
                waits.store(0, Ordering::Relaxed);
                return Ok(v);
            }
            // Shared futex; EAGAIN (changed already), EINTR, ETIMEDOUT: all mean re-check.
            let _ = futex::wait(word, futex::Flags::empty(), v, Some(&tick));
            waits.store(0, Ordering::Relaxed);
            if PEER_GONE.load(Ordering::Relaxed) || start.elapsed() > STUCK {
                bail!("the other process stopped answering");
            }
        }
    }
    let mut spins = 0u32;
    loop {
        std::hint::spin_loop();
        // SYNC POINT: Acquire, as above.
        let v = word.load(Ordering::Acquire);
        if ready(v) {
            return Ok(v);
        }
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
        if self.stream {
            return self.push(msg);
        }
        let mine = self.mine;
        // SAFETY: the payload of our slot holds `size` bytes; the receiver reads it only
        // after our Release store below and is done with it (it replied) before we write
        // again, so nobody reads it while we copy.
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
        if self.stream {
            return self.take(out, 1, |_| true).map(|_| ());
        }
        let (mine, theirs) = (self.mine, self.theirs());
        let want = self.received.wrapping_add(1);
        wait_until(&self.map.header(theirs).seq, want, self.futex)?;
        // SAFETY: the other slot's payload holds `size` bytes, published (Acquire above)
        // and left alone by its writer until we reply.
        unsafe { std::ptr::copy_nonoverlapping(self.map.payload(theirs), out.as_mut_ptr(), out.len()) };
        self.received = want;
        // SYNC POINT: Release; `ack` records what we took (ping-pong never waits for it).
        self.map.header(mine).ack.store(want, Ordering::Release);
        Ok(())
    }

    fn recv_some(&mut self, out: &mut [u8], max: u64, f: impl FnMut(&[u8]) -> bool) -> Result<u64> {
        if out.len() != self.map.size {
            bail!("buffer of {} bytes in a floor of {}", out.len(), self.map.size);
        }
        if !self.stream {
            bail!("recv_some outside a stream");
        }
        self.take(out, max, f)
    }

    fn start_stream(&mut self) -> Result<()> {
        self.stream = true;
        Ok(())
    }
}
