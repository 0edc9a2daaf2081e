//! A record in the data region: `[header: u64][payload][padding to 8 bytes]`.
//!
//! ```text
//!  63          48 47      40 39      32 31                              0
//! +--------------+----------+----------+--------------------------------+
//! |   reserved   |   slot   |   kind   |             length             |
//! +--------------+----------+----------+--------------------------------+
//! ```
//! * `kind` 0: empty. The word at the producer position is always empty (zeroed), so a
//!   consumer polling it sees "nothing yet" until a producer stores a record there.
//! * `kind` 1: claimed (MPSC only): a producer owns the space and is writing it; `slot`
//!   names the producer so that a consumer can later unblock a dead one.
//! * `kind` 2: message; `length` payload bytes follow the header.
//! * `kind` 3: padding; `length` bytes after the header are to be skipped (a multiple of
//!   8). Used at the wrap, for an aborted reservation, and for the unused tail of a
//!   reservation committed shorter than it was reserved.
//!
//! A record occupies `HEADER + align8(length)` bytes and never straddles the end of the
//! data region.

/// Size of the record header.
pub const HEADER: usize = 8;
/// Records start at multiples of this.
pub const ALIGN: usize = 8;
/// Bit position of `kind`.
pub const KIND_SHIFT: u32 = 32;
/// Bit position of `slot`.
pub const SLOT_SHIFT: u32 = 40;
/// An empty (zeroed) header.
pub const KIND_EMPTY: u64 = 0;
/// A claimed record being written.
pub const KIND_CLAIMED: u64 = 1;
/// A committed message.
pub const KIND_MESSAGE: u64 = 2;
/// Bytes to skip.
pub const KIND_PADDING: u64 = 3;

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

/// Encodes a header word.
#[inline]
pub const fn encode(kind: u64, len: u32, slot: u8) -> u64 {
    (len as u64) | (kind << KIND_SHIFT) | ((slot as u64) << SLOT_SHIFT)
}

/// The fields of a header word, unvalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// One of the `KIND_*` values, or anything else if the word is garbage.
    pub kind: u64,
    /// The length field.
    pub len: u32,
    /// The producer slot (claimed records).
    pub slot: u8,
}

/// Splits a header word into its fields. Validation is the reader's job.
#[inline]
pub const fn decode(word: u64) -> Decoded {
    Decoded { kind: (word >> KIND_SHIFT) & 0xff, len: word as u32, slot: (word >> SLOT_SHIFT) as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_gives_the_fields_back() {
        let w = encode(KIND_CLAIMED, 0xdead_beef, 42);
        assert_eq!(decode(w), Decoded { kind: KIND_CLAIMED, len: 0xdead_beef, slot: 42 });
        assert_eq!(decode(0).kind, KIND_EMPTY);
    }

    #[test]
    fn sizes_round_up_to_eight_and_add_the_header() {
        assert_eq!(size(0), 8);
        assert_eq!(size(1), 16);
        assert_eq!(size(8), 16);
        assert_eq!(size(9), 24);
    }
}
