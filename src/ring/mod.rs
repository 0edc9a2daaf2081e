//! The ring algorithms, free of system calls: they run over any [`Region`] (a mapping, a
//! heap buffer under Miri, loom's atomics), never wait, and treat every word they read from
//! shared memory as untrusted.
//!
//! Positions are monotonic `u64` byte counts; the index of a position is `pos & mask`.
//! Producers append records (`layout::record`) at the producer position (`tail`), the
//! consumer takes them at its position (`head`), and `tail - head <= capacity` always.
//!
//! * [`spsc::Producer`]: the only producer; keeps `tail` privately and publishes it.
//! * [`mpsc::Producer`]: one of many; claims space with a CAS on the shared `tail`.
//! * [`consumer::Consumer`]: a reader; takes the record at its position when the record's
//!   stamp is exactly the one for that position.
//! * [`cursors`]: several readers: the gate producers wait for, joins, members' claims.
//! * [`reclaim`]: turns the claim of an MPSC producer that died before committing into
//!   padding, so that readers behind it move on.
//!
//! How a reader tells a fresh record from stale bytes of an earlier lap: every record header
//! is stamped with its own full position (salted), and a record is readable only when its
//! stamp is exactly what the reader expects at its position. Nothing is ever zeroed, so any
//! number of readers can share one ring, and a reader killed half-way leaves nothing to
//! repair (layout v2; `docs/LAYOUT.md`).

pub mod consumer;
pub mod cursors;
pub mod inflight;
pub mod mpsc;
pub mod reclaim;
pub mod spsc;

use crate::layout::record;
use crate::sync::atomic::{AtomicU64, Ordering};

/// Positions at or above this are corrupt, and keeping positions below it means no arithmetic
/// on them (a position plus a record plus a capacity) can overflow. An honest queue reaches it
/// after 2^63 bytes: 29 years at a sustained 10 GB/s; one that does gets `Corrupt` and must be
/// recreated (a documented limit).
pub const MAX_POSITION: u64 = 1 << 63;

/// Whether a position read from shared memory could be honest: aligned and in range.
#[inline]
pub fn plausible(pos: u64) -> bool {
    pos % record::ALIGN as u64 == 0 && pos < MAX_POSITION
}

/// What a ring operation can report besides success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Not enough free space now.
    Full,
    /// A shared control word holds a value no honest participant writes.
    Corrupt(&'static str),
    /// The caller broke the API's rules (e.g. committed a reservation that is not the
    /// producer's current one); nothing was changed.
    Misuse(&'static str),
    /// This producer's claim was turned into padding by a reader that found its slot lock
    /// free (the producer was taken for dead): the record was not published.
    Reclaimed,
}

/// The fixed shape of a ring, validated once and kept privately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the data region, a power of two.
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u32,
    /// Mixed into record stamps; its low 3 bits are zero.
    pub salt: u64,
}

impl Geometry {
    /// Checks the invariants every ring relies on.
    pub fn new(capacity: u64, max_message: u32, salt: u64) -> Option<Geometry> {
        let ok = capacity.is_power_of_two()
            && (crate::layout::MIN_CAPACITY..=crate::layout::MAX_CAPACITY).contains(&capacity)
            && u64::from(max_message) <= capacity / 2
            && u64::from(max_message) <= crate::layout::MAX_MESSAGE_LIMIT
            && salt & record::KIND_MASK == 0;
        ok.then_some(Geometry { capacity, max_message, salt })
    }

    /// `capacity - 1`.
    #[inline]
    pub fn mask(&self) -> u64 {
        self.capacity - 1
    }

    /// Index of a position in the data region.
    #[inline]
    pub fn index(&self, pos: u64) -> usize {
        (pos & self.mask()) as usize
    }

    /// The stamp of a record of `kind` at `pos`.
    #[inline]
    pub fn stamp(&self, pos: u64, kind: u64) -> u64 {
        record::stamp(pos, self.salt, kind)
    }

    /// The largest record: a `max_message` payload and its header.
    #[inline]
    pub fn max_record(&self) -> u64 {
        record::size(u64::from(self.max_message))
    }
}

/// Space reserved for one record, not yet visible to readers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Position of the record header.
    pub pos: u64,
    /// Index of the record header in the data region.
    pub index: usize,
    /// Payload bytes reserved.
    pub len: u32,
    /// Bytes the record occupies: `record::size(len)`.
    pub size: u64,
    /// MPSC: the stamp word as it was when the space was claimed; the commit replaces
    /// exactly this value (a compare-and-swap), so a reader that reclaimed the space first
    /// wins cleanly.
    pub old_stamp: u64,
}

impl Reservation {
    /// Index of the first payload byte.
    #[inline]
    pub fn payload(&self) -> usize {
        self.index + record::HEADER
    }
}

/// What a reader finds at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing readable yet (stale bytes, a claim being written, a reclaim in progress).
    Nothing,
    /// A message: payload at `index + HEADER`, `len` bytes; the record is `size` bytes.
    Message {
        /// Payload length.
        len: u32,
        /// Record size.
        size: u64,
    },
    /// Padding of `size` bytes.
    Skip {
        /// Bytes to skip.
        size: u64,
    },
}

/// Reads and validates the record at `pos` (Acquire on the stamp). Shared by readers and by
/// the SPSC producer's recovery walk.
#[inline]
pub fn read_record<R: Region + ?Sized>(geo: &Geometry, region: &R, pos: u64) -> Result<Found, RingError> {
    let index = geo.index(pos);
    let room = geo.capacity - index as u64;
    // SYNC POINT: Acquire pairs with the producer's Release store (SPSC) or CAS (MPSC) of
    // the stamp: the info word and the payload written before it are visible.
    let stamp = region.word(index).load(crate::sync::atomic::Ordering::Acquire);
    // The stamp of any kind at `pos` has these high bits and the kind in the low three.
    let kind = stamp ^ geo.stamp(pos, 0);
    if kind > record::KIND_MASK {
        return Ok(Found::Nothing);
    }
    if kind == record::KIND_MESSAGE || kind == record::KIND_PADDING {
        if room < record::HEADER as u64 {
            return Err(RingError::Corrupt("record header across the end of the region"));
        }
        // Relaxed: ordered after the stamp's Acquire load; read once, validated here.
        let info = region.word(index + 8).load(crate::sync::atomic::Ordering::Relaxed);
        let (len, size) = record::decode_info(info);
        if kind == record::KIND_MESSAGE {
            // `record::size(len) >= HEADER`, so this also bounds `size` below.
            if len > geo.max_message || record::size(u64::from(len)) > size || size > room.min(geo.max_record()) {
                return Err(RingError::Corrupt("message length out of bounds"));
            }
            return Ok(Found::Message { len, size });
        }
        if size > room || size < record::HEADER as u64 {
            return Err(RingError::Corrupt("record size out of bounds"));
        }
        return Ok(Found::Skip { size });
    }
    match kind {
        record::KIND_PAD_END => Ok(Found::Skip { size: room }),
        _ => Ok(Found::Nothing), // RECLAIMING (or an unknown kind): not readable
    }
}

/// What a producer may not overtake: the lowest position some reader still needs. The ring
/// reads it only when its cached value says the ring is full. A plain `AtomicU64` is the
/// position of a single reader (the loom models and the unit tests use one); a queue with
/// subscriptions computes the minimum over their cursors (`queue::gate`).
pub trait Gate {
    /// The position below which every byte is free, as far as this producer may rely on it,
    /// for a producer whose view of the tail is `tail` and which wants `need` bytes past it.
    /// It may be lower than the true value, never higher; a value above `tail` is corrupt.
    fn head(&self, tail: u64, need: u64) -> Result<u64, RingError>;
}

impl Gate for AtomicU64 {
    #[inline]
    fn head(&self, _tail: u64, _need: u64) -> Result<u64, RingError> {
        // SYNC POINT: Acquire pairs with the reader's Release store of its position: its
        // reads of the bytes it consumed are done before we overwrite them.
        Ok(self.load(Ordering::Acquire))
    }
}

/// The data region of a ring: where records live.
///
/// Every method checks its bounds and panics rather than touch memory outside the region;
/// the ring code validates untrusted values before it calls them, so a panic here is a bug
/// in shmq, never the effect of bad shared memory.
pub trait Region {
    /// The 8-byte header word at `index` (a multiple of 8).
    fn word(&self, index: usize) -> &AtomicU64;
    /// The two words of a record header at `index` (a multiple of 8, at least
    /// [`record::HEADER`] bytes before the end): the stamp and the info word.
    #[inline]
    fn header(&self, index: usize) -> (&AtomicU64, &AtomicU64) {
        (self.word(index), self.word(index + 8))
    }
    /// Copies `src` into the region at `index`.
    fn write(&self, index: usize, src: &[u8]);
    /// Copies bytes of the region at `index` into `dst`.
    fn read(&self, index: usize, dst: &mut [u8]);
}

#[cfg(not(loom))]
mod ptr_region {
    use super::Region;
    use crate::sync::atomic::AtomicU64;

    /// A [`Region`] over raw memory: a shared mapping, or a heap buffer in tests.
    pub struct PtrRegion {
        base: *mut u8,
        len: usize,
        /// Whole 8-byte words in the region: `len / 8`.
        words: usize,
        /// Positions for a two-word record header: `words - 1` (or 0).
        headers: usize,
    }

    // SAFETY: the region is shared memory accessed through atomics (headers) and through
    // copies whose exclusivity the ring protocol establishes; it holds no thread-local state.
    unsafe impl Send for PtrRegion {}
    // SAFETY: as above.
    unsafe impl Sync for PtrRegion {}

    impl PtrRegion {
        /// # Safety
        /// `base` must be valid for reads and writes of `len` bytes, 8-byte aligned, for as
        /// long as the region (and anything borrowed from it) lives.
        pub unsafe fn new(base: *mut u8, len: usize) -> PtrRegion {
            debug_assert!(base as usize % 8 == 0);
            PtrRegion { base, len, words: len / 8, headers: (len / 8).saturating_sub(1) }
        }

        /// Appends the `len` bytes of the region at `index` to `dst`, copied once: without
        /// zero-filling the room first, as `resize` and then [`Region::read`] would (a
        /// second pass over every byte the journal copies).
        pub fn read_append(&self, index: usize, len: usize, dst: &mut Vec<u8>) {
            let p = self.ptr(index, len);
            dst.reserve(len);
            let at = dst.len();
            // SAFETY: `p` is in bounds for `len` bytes (checked above), bytes of a committed
            // record the caller holds; `reserve` made room for `len` more bytes after `at`,
            // private memory, which cannot overlap the region. Once copied they are
            // initialized, so the length may cover them.
            unsafe {
                copy(p, dst.as_mut_ptr().add(at), len);
                dst.set_len(at + len);
            }
        }

        /// A pointer to `len` bytes at `index`, bounds-checked.
        #[inline]
        pub fn ptr(&self, index: usize, len: usize) -> *mut u8 {
            assert!(index <= self.len && len <= self.len - index, "ring index out of bounds");
            // SAFETY: in bounds of the allocation, checked above.
            unsafe { self.base.add(index) }
        }
    }

    impl Region for PtrRegion {
        #[inline]
        fn word(&self, index: usize) -> &AtomicU64 {
            // One comparison for both conditions: rotating moves the low three bits to the
            // top, so an unaligned index becomes larger than any word count; an aligned one
            // becomes its word number, which must be below the number of whole words.
            assert!(index.rotate_right(3) < self.words, "ring word out of bounds or unaligned");
            // SAFETY: in bounds (checked above), 8-byte aligned (base is, index is), valid
            // for the region's lifetime; every concurrent access to a header word is atomic.
            unsafe { AtomicU64::from_ptr(self.base.add(index).cast()) }
        }

        #[inline]
        fn header(&self, index: usize) -> (&AtomicU64, &AtomicU64) {
            // As in `word`, for two words: the second must be a whole word too.
            assert!(index.rotate_right(3) < self.headers, "ring header out of bounds or unaligned");
            // SAFETY: both words in bounds (checked above, with one test instead of two),
            // 8-byte aligned, valid for the region's lifetime; accessed only atomically.
            unsafe {
                let p = self.base.add(index).cast::<u64>();
                (AtomicU64::from_ptr(p), AtomicU64::from_ptr(p.add(1)))
            }
        }

        #[inline]
        fn write(&self, index: usize, src: &[u8]) {
            let p = self.ptr(index, src.len());
            // SAFETY: in bounds; the ring protocol gives this producer exclusive use of the
            // reserved bytes; `src` is private memory, so the two cannot overlap.
            unsafe { copy(src.as_ptr(), p, src.len()) }
        }

        #[inline]
        fn read(&self, index: usize, dst: &mut [u8]) {
            let p = self.ptr(index, dst.len());
            // SAFETY: in bounds; the bytes belong to a committed record the consumer holds.
            unsafe { copy(p, dst.as_mut_ptr(), dst.len()) }
        }
    }

    /// `copy_nonoverlapping`, with the copies of up to 64 bytes done inline (two
    /// overlapping loads and stores of a power of two between `len / 2` and `len`) instead of
    /// through a call to `memcpy`, whose call, dispatch and return cost more than such a
    /// copy itself. Every load and store stays inside `src..src + len` and
    /// `dst..dst + len`.
    ///
    /// # Safety
    /// As for `copy_nonoverlapping`: `src` valid for reads and `dst` for writes of `len`
    /// bytes, the two not overlapping.
    #[inline(always)]
    unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
        /// Copies `N` bytes at `0` and `N` bytes ending at `len` (`N <= len <= 2 * N`).
        ///
        /// # Safety
        /// As for `copy`, with `N <= len`.
        #[inline(always)]
        unsafe fn two<const N: usize>(src: *const u8, dst: *mut u8, len: usize) {
            // SAFETY: `N <= len`, so both `N`-byte ranges lie inside the `len` bytes the
            // caller vouches for; unaligned accesses are what `read/write_unaligned` do.
            unsafe {
                let head = src.cast::<[u8; N]>().read_unaligned();
                let tail = src.add(len - N).cast::<[u8; N]>().read_unaligned();
                dst.cast::<[u8; N]>().write_unaligned(head);
                dst.add(len - N).cast::<[u8; N]>().write_unaligned(tail);
            }
        }
        // SAFETY: each branch copies within `len` bytes (see `two`); the caller vouches for
        // `src`, `dst` and `len`.
        unsafe {
            // Ordered so that the usual message sizes take few branches.
            if len >= 8 {
                if len <= 16 {
                    two::<8>(src, dst, len)
                } else if len <= 32 {
                    two::<16>(src, dst, len)
                } else if len <= 64 {
                    two::<32>(src, dst, len)
                } else {
                    std::ptr::copy_nonoverlapping(src, dst, len)
                }
            } else if len >= 4 {
                two::<4>(src, dst, len)
            } else if len >= 2 {
                two::<2>(src, dst, len)
            } else if len == 1 {
                dst.write(src.read())
            }
        }
    }

    /// An 8-byte-aligned heap buffer standing in for a mapping (tests, Miri, benches).
    ///
    /// It owns its allocation through the raw pointer in `region`, not through a `Box`:
    /// moving a `Box` asserts unique access to its memory (Stacked Borrows), which would
    /// invalidate the pointer the region hands out (Miri reports that as undefined behavior).
    pub struct HeapRegion {
        region: PtrRegion,
        /// `u64` words in the allocation.
        words: usize,
    }

    impl HeapRegion {
        /// A zeroed region of `len` bytes (rounded up to a multiple of 8 for the allocation).
        pub fn new(len: usize) -> HeapRegion {
            let words = len.div_ceil(8);
            let base = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<u8>();
            // SAFETY: the allocation holds `words * 8 >= len` bytes, is 8-aligned, and is
            // freed only by `drop`, when nothing borrowed from the region is left.
            let region = unsafe { PtrRegion::new(base, len) };
            HeapRegion { region, words }
        }
    }

    impl Drop for HeapRegion {
        fn drop(&mut self) {
            let slice = std::ptr::slice_from_raw_parts_mut(self.region.base.cast::<u64>(), self.words);
            // SAFETY: `slice` is exactly what `Box::into_raw` returned in `new`, freed once.
            drop(unsafe { Box::from_raw(slice) });
        }
    }

    impl std::ops::Deref for HeapRegion {
        type Target = PtrRegion;
        fn deref(&self) -> &PtrRegion {
            &self.region
        }
    }
}

#[cfg(not(loom))]
pub use ptr_region::{HeapRegion, PtrRegion};

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, not(loom)))]
mod cursors_tests;
