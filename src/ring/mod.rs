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
//! * [`consumer::Consumer`]: the only consumer; polls the header at `head`.
//!
//! How the consumer tells a fresh record from stale bytes of an earlier lap: the word at the
//! producer position is always zero. In SPSC the producer zeroes the header after its
//! record before it commits the record; in MPSC (where the next record belongs to another
//! producer) the consumer zeroes every byte it consumed before it publishes `head`, as
//! Agrona's many-to-one ring does.

pub mod consumer;
pub mod mpsc;
pub mod spsc;

use crate::layout::record;
use crate::sync::atomic::AtomicU64;

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
}

/// The fixed shape of a ring, validated once and kept privately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the data region, a power of two.
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u32,
}

impl Geometry {
    /// Checks the invariants every ring relies on.
    pub fn new(capacity: u64, max_message: u32) -> Option<Geometry> {
        let ok = capacity.is_power_of_two()
            && (crate::layout::MIN_CAPACITY..=crate::layout::MAX_CAPACITY).contains(&capacity)
            && u64::from(max_message) <= capacity / 2
            && u64::from(max_message) <= crate::layout::MAX_MESSAGE_LIMIT;
        ok.then_some(Geometry { capacity, max_message })
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
}

/// Space reserved for one record, not yet visible to the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Position of the record header.
    pub pos: u64,
    /// Index of the record header in the data region.
    pub index: usize,
    /// Payload bytes reserved.
    pub len: u32,
}

impl Reservation {
    /// Index of the first payload byte.
    #[inline]
    pub fn payload(&self) -> usize {
        self.index + record::HEADER
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
    /// Copies `src` into the region at `index`.
    fn write(&self, index: usize, src: &[u8]);
    /// Copies bytes of the region at `index` into `dst`.
    fn read(&self, index: usize, dst: &mut [u8]);
    /// Zeroes `len` bytes at `index`.
    fn zero(&self, index: usize, len: usize);
}

#[cfg(not(loom))]
mod ptr_region {
    use super::Region;
    use crate::sync::atomic::AtomicU64;

    /// A [`Region`] over raw memory: a shared mapping, or a heap buffer in tests.
    pub struct PtrRegion {
        base: *mut u8,
        len: usize,
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
            PtrRegion { base, len }
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
            assert!(index % 8 == 0, "unaligned header index");
            let p = self.ptr(index, 8);
            // SAFETY: in bounds (checked by `ptr`), 8-byte aligned (base is, index is), valid
            // for the region's lifetime; every concurrent access to a header word is atomic.
            unsafe { AtomicU64::from_ptr(p.cast()) }
        }

        #[inline]
        fn write(&self, index: usize, src: &[u8]) {
            let p = self.ptr(index, src.len());
            // SAFETY: in bounds; the ring protocol gives this producer exclusive use of the
            // reserved bytes; `src` is private memory, so the two cannot overlap.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) }
        }

        #[inline]
        fn read(&self, index: usize, dst: &mut [u8]) {
            let p = self.ptr(index, dst.len());
            // SAFETY: in bounds; the bytes belong to a committed record the consumer holds.
            unsafe { std::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) }
        }

        #[inline]
        fn zero(&self, index: usize, len: usize) {
            let p = self.ptr(index, len);
            // SAFETY: in bounds; consumed bytes belong to the consumer until it publishes.
            unsafe { std::ptr::write_bytes(p, 0, len) }
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
