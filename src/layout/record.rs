//! A record in the data region (layout v2): `[stamp: u64][info: u64][payload][padding to 8]`.
//!
//! ```text
//! word 0, the stamp         63                                               3 2     0
//!                           +-------------------------------------------------+-------+
//!                           |        (position ^ salt), bits 63..3            | kind  |
//!                           +-------------------------------------------------+-------+
//! word 1, the info          63                             32 31                     0
//!                           +--------------------------------+-----------------------+
//!                           |     record size / 8            |    payload length     |
//!                           +--------------------------------+-----------------------+
//! ```
//!
//! A record is *there* only when its stamp is exactly [`stamp`]`(position, salt, kind)`
//! for the position the reader expects: every byte of the region may hold anything from an
//! earlier lap (old stamps carry older positions, old payloads are random to the salt), so
//! nothing is ever zeroed and any number of readers can share the ring. Positions are
//! multiples of 8, so the kind fits in the low three bits; the full 64-bit position is
//! stamped because a 32-bit one would repeat every 4 GiB (minutes at 30 M msg/s). The
//! queue's random salt (chosen at creation) keeps payloads that carry positions, such as
//! message ids, from reading as stamps.
//!
//! A record is published by one Release store (SPSC) or one compare-and-swap (MPSC) of its
//! stamp, after its info word and payload are written.
//!
//! * [`KIND_MESSAGE`]: `length` payload bytes follow the header; the record occupies `size`
//!   bytes (more than `HEADER + align(length)` when a reservation was committed shorter).
//! * [`KIND_PADDING`]: `size` bytes to skip (an aborted reservation, a reclaimed claim).
//! * [`KIND_PAD_END`]: skip to the end of the region (the wrap). Only the stamp word is
//!   written, so it fits the last 8 bytes too.
//! * [`KIND_RECLAIMING`]: a reader is turning a dead producer's claim into padding; not yet
//!   readable. Whoever finds it may finish the job (it is idempotent).
//!
//! A record never straddles the end of the data region.

/// Size of the record header.
pub const HEADER: usize = 16;
/// Records start at multiples of this.
pub const ALIGN: usize = 8;
/// The low bits of a stamp that hold the kind.
pub const KIND_MASK: u64 = 7;
/// A committed message.
pub const KIND_MESSAGE: u64 = 1;
/// Bytes to skip; the size is in the info word.
pub const KIND_PADDING: u64 = 2;
/// Skip to the end of the data region.
pub const KIND_PAD_END: u64 = 3;
/// A dead producer's claim being turned into padding.
pub const KIND_RECLAIMING: u64 = 4;

/// Rounds `len` up to [`ALIGN`].
#[inline]
pub const fn align(len: u64) -> u64 {
    (len + (ALIGN as u64 - 1)) & !(ALIGN as u64 - 1)
}

/// Bytes a record with `len` payload bytes occupies.
#[inline]
pub const fn size(len: u64) -> u64 {
    HEADER as u64 + align(len)
}

/// The stamp of a record of `kind` at `pos` in a queue with `salt` (whose low 3 bits are 0).
#[inline]
pub const fn stamp(pos: u64, salt: u64, kind: u64) -> u64 {
    ((pos ^ salt) & !KIND_MASK) | kind
}

/// The info word: payload length and record size (a multiple of 8).
#[inline]
pub const fn info(len: u32, size: u64) -> u64 {
    (len as u64) | ((size / ALIGN as u64) << 32)
}

/// `(length, size)` of an info word, unvalidated.
#[inline]
pub const fn decode_info(word: u64) -> (u32, u64) {
    (word as u32, (word >> 32) * ALIGN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_gives_length_and_size_back() {
        assert_eq!(decode_info(info(0xdead_beef, 1 << 33)), (0xdead_beef, 1 << 33));
        assert_eq!(decode_info(info(5, 24)), (5, 24));
    }

    #[test]
    fn stamps_of_different_positions_or_kinds_differ() {
        let salt = 0x5a5a_1234_8765_4320;
        assert_ne!(stamp(0, salt, KIND_MESSAGE), stamp(1 << 20, salt, KIND_MESSAGE));
        assert_ne!(stamp(8, salt, KIND_MESSAGE), stamp(8, salt, KIND_PADDING));
        assert_eq!(stamp(8, salt, KIND_MESSAGE) & KIND_MASK, KIND_MESSAGE);
        assert_eq!(stamp(8, 0, KIND_MESSAGE), 9);
    }

    #[test]
    fn sizes_round_up_to_eight_and_add_the_header() {
        assert_eq!(size(0), 16);
        assert_eq!(size(1), 24);
        assert_eq!(size(8), 24);
        assert_eq!(size(9), 32);
    }
}
