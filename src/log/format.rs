//! The on-disk format of the log: segment headers, mark slots, the META record and frames.
//! `docs/LOG_FORMAT.md` has the same tables for readers outside Rust. All integers are
//! little-endian.
//!
//! A frame is the ring record of a durable queue with its first word replaced by
//! `pos | kind` (the ring stamps `(pos ^ salt) | kind`):
//!
//! ```text
//! 0  w0   u64  pos | kind       kind: 1 message, 2 padding, 3 pad-end
//! 8  info u64  len (u32) | (size / 8) << 32
//! 16 ts   u64  producer timestamp, ns since the Unix epoch
//! 24 crc  u32  crc32c(w0 ‖ info ‖ ts ‖ user payload); then u32 reserved = 0
//! 32 user payload (len - 16 bytes)
//! ```

/// Bytes before position `k·S` in segment `k`.
pub const HEADER_LEN: u64 = 4096;
/// First bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"SHMQLOG1";
/// First bytes of each META slot.
pub const META_MAGIC: [u8; 8] = *b"SHMQMETA";
/// The format version this code writes and reads; a newer one is refused.
pub const VERSION: u32 = 1;
/// Offsets of the two mark slots in a segment header.
pub const MARK_SLOTS: [u64; 2] = [512, 1024];
/// Bytes of a mark slot: `seq u64, synced_through u64, crc u32, reserved u32`.
pub const MARK_LEN: usize = 24;
/// Bytes of each META slot; the slots are at 0 and `META_SLOT`.
pub const META_SLOT: u64 = 512;
/// Bytes of a META record inside its slot.
pub const META_LEN: usize = 76;

/// A message frame.
pub const KIND_MESSAGE: u64 = 1;
/// Bytes to skip (`size` in the info word).
pub const KIND_PADDING: u64 = 2;
/// Skip to the next multiple of `wrap`.
pub const KIND_PAD_END: u64 = 3;
/// First bytes after the info word of a gap frame: a padding frame of [`GAP_LEN`] bytes
/// that says where the stream goes on (see [`encode_gap`]).
pub const GAP_MAGIC: [u8; 8] = *b"SHMQGAP1";
/// Bytes of a gap frame.
pub const GAP_LEN: u64 = 40;
/// The longest user payload a frame may claim: the queue's largest `max_message` (2^30).
/// A longer claim is damage, refused before anything that long is read.
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// Bytes of a message frame before the user payload.
pub const FRAME_HEADER: u64 = 32;
/// `len` counts these bytes of the ring payload before the user payload (ts, crc, reserved).
pub const LEN_OVERHEAD: u64 = 16;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// Rounds up to a multiple of 8.
pub const fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Bytes a message frame with `payload_len` user bytes occupies at least.
pub const fn message_size(payload_len: u64) -> u64 {
    align8(FRAME_HEADER + payload_len)
}

/// The identity of one segment, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version.
    pub version: u32,
    /// The queue identity.
    pub identity: [u8; 16],
    /// Positions per segment.
    pub seg_size: u64,
    /// Ring capacity.
    pub wrap: u64,
    /// Segment index `k`.
    pub index: u64,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: u64,
}

/// Header layout: magic 0..8, version 8..12, header_len 12..16, identity 16..32, seg_size
/// 32..40, wrap 40..48, index 48..56, created_ns 56..64, crc32c(0..64) 64..68.
impl SegmentHeader {
    /// The header's 4096 bytes (mark slots empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..32].copy_from_slice(&self.identity);
        b[32..40].copy_from_slice(&self.seg_size.to_le_bytes());
        b[40..48].copy_from_slice(&self.wrap.to_le_bytes());
        b[48..56].copy_from_slice(&self.index.to_le_bytes());
        b[56..64].copy_from_slice(&self.created_ns.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..64]);
        b[64..68].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses the first 68+ bytes of a segment. `Err` says what is wrong; a newer version
    /// is `Err(HeaderError::Newer)` (checked before the crc, whose coverage may change).
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < 68 {
            return Err(HeaderError::Bad("shorter than a header".into()));
        }
        if b[0..8] != MAGIC {
            return Err(HeaderError::Bad("not a shmq log segment (bad magic)".into()));
        }
        let version = u32_at(b, 8);
        if version > VERSION {
            return Err(HeaderError::Newer(version));
        }
        if crc32c::crc32c(&b[0..64]) != u32_at(b, 64) {
            return Err(HeaderError::Bad("header checksum mismatch".into()));
        }
        if version == 0 || u32_at(b, 12) as u64 != HEADER_LEN {
            return Err(HeaderError::Bad(format!("bad version {version} or header length {}", u32_at(b, 12))));
        }
        Ok(SegmentHeader {
            version,
            identity: b[16..32].try_into().expect("16 bytes"),
            seg_size: u64_at(b, 32),
            wrap: u64_at(b, 40),
            index: u64_at(b, 48),
            created_ns: u64_at(b, 56),
        })
    }
}

/// Why a header or META slot was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Written by a newer format version.
    Newer(u32),
    /// Damaged or not ours.
    Bad(String),
}

/// A mark: `synced_through` was durable before the sync that wrote this mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Higher wins.
    pub seq: u64,
    /// A position known durable.
    pub synced_through: u64,
}

impl Mark {
    /// The slot's 24 bytes.
    pub fn encode(&self) -> [u8; MARK_LEN] {
        let mut b = [0u8; MARK_LEN];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.synced_through.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..16]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A valid slot (`seq > 0`, crc right), or `None`.
    pub fn decode(b: &[u8]) -> Option<Mark> {
        if b.len() < MARK_LEN || crc32c::crc32c(&b[0..16]) != u32_at(b, 16) {
            return None;
        }
        let m = Mark { seq: u64_at(b, 0), synced_through: u64_at(b, 8) };
        (m.seq > 0).then_some(m)
    }

    /// The winner of the two slots of a header (`hdr` at least 1048 bytes).
    pub fn best(hdr: &[u8]) -> Option<Mark> {
        let a = Mark::decode(&hdr[MARK_SLOTS[0] as usize..]);
        let b = Mark::decode(&hdr[MARK_SLOTS[1] as usize..]);
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// The META record: the queue's identity, geometry and id ceiling.
///
/// Layout inside each 512-byte slot: magic 0..8, version 8..12, mode 12..16, seq 16..24,
/// identity 24..40, id_ceiling 40..48, seg_size 48..56, wrap 56..64, reserved 64..72,
/// crc32c(0..72) 72..76.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Format version.
    pub version: u32,
    /// Permission bits of the log's files.
    pub mode: u32,
    /// Higher wins.
    pub seq: u64,
    /// The queue identity.
    pub identity: [u8; 16],
    /// No id at or above this is ever handed out.
    pub ceiling: u64,
    /// Positions per segment.
    pub seg_size: u64,
    /// Ring capacity.
    pub wrap: u64,
}

impl Meta {
    /// The slot's bytes.
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[0..8].copy_from_slice(&META_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.mode.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..40].copy_from_slice(&self.identity);
        b[40..48].copy_from_slice(&self.ceiling.to_le_bytes());
        b[48..56].copy_from_slice(&self.seg_size.to_le_bytes());
        b[56..64].copy_from_slice(&self.wrap.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..72]);
        b[72..76].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A valid slot, `Err(Newer)` for a newer version, `Err(Bad)` otherwise.
    pub fn decode(b: &[u8]) -> Result<Meta, HeaderError> {
        if b.len() < META_LEN || b[0..8] != META_MAGIC {
            return Err(HeaderError::Bad("bad magic".into()));
        }
        let version = u32_at(b, 8);
        if version > VERSION {
            return Err(HeaderError::Newer(version));
        }
        if crc32c::crc32c(&b[0..72]) != u32_at(b, 72) {
            return Err(HeaderError::Bad("checksum mismatch".into()));
        }
        Ok(Meta {
            version,
            mode: u32_at(b, 12),
            seq: u64_at(b, 16),
            identity: b[24..40].try_into().expect("16 bytes"),
            ceiling: u64_at(b, 40),
            seg_size: u64_at(b, 48),
            wrap: u64_at(b, 56),
        })
    }
}

/// The crc of a message frame: over w0, info, ts and the user payload.
pub fn frame_crc(frame: &[u8], payload_len: usize) -> u32 {
    let c = crc32c::crc32c(&frame[0..24]);
    crc32c::crc32c_append(c, &frame[FRAME_HEADER as usize..FRAME_HEADER as usize + payload_len])
}

/// A message frame of `size` bytes (at least [`message_size`]`(payload.len())`, a multiple
/// of 8) at `pos`; bytes after the payload are zero.
pub fn encode_message(pos: u64, ts: u64, payload: &[u8], size: u64) -> Vec<u8> {
    assert!(size % 8 == 0 && size >= message_size(payload.len() as u64), "frame size too small");
    let mut b = vec![0u8; size as usize];
    let len = LEN_OVERHEAD + payload.len() as u64;
    b[8..16].copy_from_slice(&(len | ((size / 8) << 32)).to_le_bytes());
    b[16..24].copy_from_slice(&ts.to_le_bytes());
    b[32..32 + payload.len()].copy_from_slice(payload);
    seal(&mut b, pos);
    b
}

/// A padding frame of `size` bytes (at least 16, a multiple of 8) at `pos`.
pub fn encode_padding(pos: u64, size: u64) -> Vec<u8> {
    assert!(size % 8 == 0 && size >= 16, "padding size");
    let mut b = vec![0u8; size as usize];
    b[0..8].copy_from_slice(&(pos | KIND_PADDING).to_le_bytes());
    b[8..16].copy_from_slice(&((size / 8) << 32).to_le_bytes());
    b
}

/// The 8-byte pad-end frame at `pos`: the stream goes on at the next multiple of `wrap`.
pub fn encode_pad_end(pos: u64) -> [u8; 8] {
    (pos | KIND_PAD_END).to_le_bytes()
}

/// The gap frame at `pos`: the stream goes on at `next` (a multiple of the segment size,
/// past `pos`'s segment). A restored queue starts its stream at the first segment boundary
/// at or above every id ever handed out; the gap frame at the old end bridges the positions
/// in between, so that a walk of the log (recovery, `log verify`, a reader) tells that gap
/// from damage. A padding frame to readers that do not know it:
///
/// ```text
/// 0  w0    u64  pos | 2 (padding)
/// 8  info  u64  (40 / 8) << 32
/// 16 magic      "SHMQGAP1"
/// 24 next  u64
/// 32 crc   u32  crc32c of bytes 0..32; then u32 reserved = 0
/// ```
pub fn encode_gap(pos: u64, next: u64) -> [u8; GAP_LEN as usize] {
    let mut b = [0u8; GAP_LEN as usize];
    b[0..8].copy_from_slice(&(pos | KIND_PADDING).to_le_bytes());
    b[8..16].copy_from_slice(&((GAP_LEN / 8) << 32).to_le_bytes());
    b[16..24].copy_from_slice(&GAP_MAGIC);
    b[24..32].copy_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Makes `frame` (a message frame whose info, ts and payload are in place, as copied from
/// the ring) a frame at `pos`: sets w0 and the crc and clears the reserved word. A buffer
/// whose info word does not describe a message that fits is left as it is except for w0.
pub fn seal(frame: &mut [u8], pos: u64) {
    frame[0..8].copy_from_slice(&(pos | KIND_MESSAGE).to_le_bytes());
    let len = u32_at(frame, 8) as u64;
    if len < LEN_OVERHEAD || FRAME_HEADER + (len - LEN_OVERHEAD) > frame.len() as u64 {
        return;
    }
    let payload_len = (len - LEN_OVERHEAD) as usize;
    frame[28..32].fill(0);
    let crc = frame_crc(frame, payload_len);
    frame[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// Makes a ring record of any kind, copied into `rec`, the frame at `pos`: a message is
/// [`seal`]ed; padding and pad-end get `w0 = pos | kind` only (they carry no crc).
/// `kind` is [`KIND_MESSAGE`], [`KIND_PADDING`] or [`KIND_PAD_END`].
pub fn seal_kind(rec: &mut [u8], pos: u64, kind: u64) {
    assert!((KIND_MESSAGE..=KIND_PAD_END).contains(&kind), "kind {kind}");
    if kind == KIND_MESSAGE {
        seal(rec, pos);
    } else {
        rec[0..8].copy_from_slice(&(pos | kind).to_le_bytes());
    }
}

/// One frame, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A message: its producer timestamp and user payload; the frame takes `size` bytes.
    Message {
        /// Producer timestamp.
        ts: u64,
        /// User payload.
        payload: &'a [u8],
        /// Bytes the frame occupies.
        size: u64,
    },
    /// `size` bytes to skip.
    Padding {
        /// Bytes the frame occupies.
        size: u64,
    },
    /// The stream goes on at `next` (a multiple of `wrap`).
    PadEnd {
        /// Where the next frame starts.
        next: u64,
    },
    /// A restart's gap ([`encode_gap`]): the stream goes on at `next`, a segment boundary
    /// past this frame's segment.
    Gap {
        /// Where the next frame starts.
        next: u64,
    },
}

impl Decoded<'_> {
    /// The position after this frame, which started at `pos`.
    pub fn next(&self, pos: u64) -> u64 {
        match *self {
            Decoded::Message { size, .. } | Decoded::Padding { size } => pos + size,
            Decoded::PadEnd { next } | Decoded::Gap { next } => next,
        }
    }
}

/// Why the bytes at a position are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The buffer ends before the frame does (read more and try again).
    Short(u64),
    /// Not a frame for this position.
    Bad(String),
}

/// Validates the frame at the start of `b`, expected at position `pos`, in a log whose ring
/// capacity is `wrap` and whose segment ends at `seg_end`. `b` may hold more than the frame;
/// [`Invalid::Short`] asks for at least that many bytes.
pub fn decode(b: &[u8], pos: u64, wrap: u64, seg_end: u64) -> Result<Decoded<'_>, Invalid> {
    if pos % 8 != 0 {
        return Err(Invalid::Bad(format!("position {pos} is not 8-aligned")));
    }
    if b.len() < 8 {
        return Err(Invalid::Short(8));
    }
    let w0 = u64_at(b, 0);
    let kind = w0 & 7;
    if w0 & !7 != pos || !(KIND_MESSAGE..=KIND_PAD_END).contains(&kind) {
        return Err(Invalid::Bad(format!("no frame for position {pos} (first word {w0:#018x})")));
    }
    let limit = ((pos / wrap) + 1) * wrap;
    let limit = limit.min(seg_end);
    if kind == KIND_PAD_END {
        if pos % wrap == 0 {
            return Err(Invalid::Bad(format!("pad-end at a multiple of wrap ({pos})")));
        }
        // A pad-end has no checksum, and one flipped bit turns a message's kind (1) into
        // it (3). If the bytes read as a message at `pos` carry a valid crc, that is what
        // they are, damaged: refuse rather than skip to the wrap.
        if b.len() >= 16 {
            let info = u64_at(b, 8);
            let (len, size) = (info as u32 as u64, (info >> 32) * 8);
            if len >= LEN_OVERHEAD
                && len - LEN_OVERHEAD <= MAX_PAYLOAD
                && size >= align8(16 + len)
                && pos + size <= limit
            {
                let need = 16 + len;
                if (b.len() as u64) < need {
                    return Err(Invalid::Short(need));
                }
                let mut head = [0u8; 24];
                head.copy_from_slice(&b[0..24]);
                head[0..8].copy_from_slice(&(pos | KIND_MESSAGE).to_le_bytes());
                let c = crc32c::crc32c_append(crc32c::crc32c(&head), &b[FRAME_HEADER as usize..(16 + len) as usize]);
                if c == u32_at(b, 24) {
                    return Err(Invalid::Bad(format!(
                        "a message frame at {pos} with a damaged kind (reads as pad-end)"
                    )));
                }
            }
        }
        return Ok(Decoded::PadEnd { next: ((pos / wrap) + 1) * wrap });
    }
    if b.len() < 16 {
        return Err(Invalid::Short(16));
    }
    let info = u64_at(b, 8);
    let len = info as u32 as u64;
    let size = (info >> 32) * 8;
    if size < 16 || pos + size > limit {
        return Err(Invalid::Bad(format!("frame size {size} does not fit before {limit}")));
    }
    if kind == KIND_PADDING {
        if size == GAP_LEN {
            return decode_gap(b, pos, wrap, seg_end);
        }
        return Ok(Decoded::Padding { size });
    }
    if len < LEN_OVERHEAD || len - LEN_OVERHEAD > MAX_PAYLOAD || align8(16 + len) > size {
        return Err(Invalid::Bad(format!("message length {len} does not fit its size {size}")));
    }
    let need = (16 + len) as usize;
    if b.len() < need {
        return Err(Invalid::Short(need as u64));
    }
    if u32_at(b, 28) != 0 {
        return Err(Invalid::Bad("reserved word is not zero".into()));
    }
    let payload_len = (len - LEN_OVERHEAD) as usize;
    let crc = frame_crc(b, payload_len);
    if crc != u32_at(b, 24) {
        return Err(Invalid::Bad(format!("checksum mismatch (stored {:#010x}, computed {crc:#010x})", u32_at(b, 24))));
    }
    Ok(Decoded::Message {
        ts: u64_at(b, 16),
        payload: &b[FRAME_HEADER as usize..FRAME_HEADER as usize + payload_len],
        size,
    })
}

/// A padding frame of [`GAP_LEN`] bytes at `pos`: a gap frame if it carries the magic, or
/// plain padding (whose bytes after the info word are zero).
fn decode_gap(b: &[u8], pos: u64, wrap: u64, seg_end: u64) -> Result<Decoded<'_>, Invalid> {
    if (b.len() as u64) < GAP_LEN {
        return Err(Invalid::Short(GAP_LEN));
    }
    if b[16..24] != GAP_MAGIC {
        return Ok(Decoded::Padding { size: GAP_LEN });
    }
    if crc32c::crc32c(&b[0..32]) != u32_at(b, 32) || u32_at(b, 36) != 0 {
        return Err(Invalid::Bad(format!("damaged gap frame at {pos}")));
    }
    let next = u64_at(b, 24);
    // Past this frame's segment, to a boundary of the stream's windows: a segment
    // boundary is one (segments are whole multiples of `wrap`).
    if next < seg_end || next % wrap != 0 || next >= 1 << 63 {
        return Err(Invalid::Bad(format!(
            "gap frame at {pos} goes on at {next}, not past its segment's end {seg_end}"
        )));
    }
    Ok(Decoded::Gap { next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_frame_says_where_the_stream_goes_on_and_plain_padding_of_its_size_stays_padding() {
        let g = encode_gap(512, 8192);
        assert_eq!(decode(&g, 512, 1024, 4096), Ok(Decoded::Gap { next: 8192 }));
        assert_eq!(Decoded::Gap { next: 8192 }.next(512), 8192);
        assert_eq!(decode(&g[..39], 512, 1024, 4096), Err(Invalid::Short(GAP_LEN)));
        // Into its own segment, or off a window's boundary: refused.
        assert!(matches!(decode(&encode_gap(512, 2048), 512, 1024, 4096), Err(Invalid::Bad(_))));
        assert!(matches!(decode(&encode_gap(512, 8200), 512, 1024, 4096), Err(Invalid::Bad(_))));
        // Any flipped bit of the target is caught by the checksum.
        for bit in 0..64 {
            let mut d = g;
            d[24 + bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(decode(&d, 512, 1024, 4096), Err(Invalid::Bad(_))), "bit {bit}");
        }
        assert_eq!(decode(&encode_padding(512, GAP_LEN), 512, 1024, 4096), Ok(Decoded::Padding { size: GAP_LEN }));
    }

    #[test]
    fn a_message_frame_decodes_to_what_was_encoded() {
        let f = encode_message(64, 7, b"hello", message_size(5));
        assert_eq!(f.len(), 40);
        let d = decode(&f, 64, 1024, 4096).unwrap();
        assert_eq!(d, Decoded::Message { ts: 7, payload: b"hello", size: 40 });
        assert!(matches!(decode(&f, 72, 1024, 4096), Err(Invalid::Bad(_))));
        assert_eq!(decode(&f[..20], 64, 1024, 4096), Err(Invalid::Short(37)));
    }

    #[test]
    fn seal_gives_the_same_bytes_as_encode() {
        let want = encode_message(128, 99, b"payload!", 48);
        let mut got = want.clone();
        got[0..8].fill(0xaa);
        got[24..32].fill(0x55);
        seal(&mut got, 128);
        assert_eq!(got, want);
    }

    #[test]
    fn seal_kind_restamps_padding_and_pad_end_without_a_crc() {
        let mut pad = encode_padding(0, 24);
        pad[0..8].fill(0x77);
        seal_kind(&mut pad, 512, KIND_PADDING);
        assert_eq!(decode(&pad, 512, 1024, 4096), Ok(Decoded::Padding { size: 24 }));
        let mut end = [0x77u8; 8];
        seal_kind(&mut end, 1016, KIND_PAD_END);
        assert_eq!(decode(&end, 1016, 1024, 4096), Ok(Decoded::PadEnd { next: 1024 }));
        let mut msg = encode_message(0, 3, b"abc", 40);
        seal_kind(&mut msg, 64, KIND_MESSAGE);
        assert_eq!(decode(&msg, 64, 1024, 4096), Ok(Decoded::Message { ts: 3, payload: b"abc", size: 40 }));
    }

    #[test]
    fn frames_may_not_cross_a_wrap_multiple() {
        let f = encode_message(1000, 0, &[1; 16], 48);
        assert!(matches!(decode(&f, 1000, 1024, 4096), Err(Invalid::Bad(_))));
        let p = encode_pad_end(1000);
        assert_eq!(decode(&p, 1000, 1024, 4096), Ok(Decoded::PadEnd { next: 1024 }));
        let pad = encode_padding(1000, 24);
        assert_eq!(decode(&pad, 1000, 1024, 4096), Ok(Decoded::Padding { size: 24 }));
    }

    #[test]
    fn headers_marks_and_meta_round_trip_and_catch_damage() {
        let h = SegmentHeader { version: 1, identity: [3; 16], seg_size: 1 << 20, wrap: 4096, index: 5, created_ns: 1 };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[40] ^= 1;
        assert!(matches!(SegmentHeader::decode(&b), Err(HeaderError::Bad(_))));
        b[8] = 2;
        assert_eq!(SegmentHeader::decode(&b), Err(HeaderError::Newer(2)));
        let m = Mark { seq: 3, synced_through: 4096 };
        let mut mb = m.encode();
        assert_eq!(Mark::decode(&mb), Some(m));
        mb[9] ^= 1;
        assert_eq!(Mark::decode(&mb), None);
        let meta = Meta { version: 1, mode: 0o600, seq: 2, identity: [9; 16], ceiling: 1 << 30, seg_size: 8, wrap: 8 };
        let mut e = meta.encode();
        assert_eq!(Meta::decode(&e), Ok(meta));
        e[41] ^= 4;
        assert!(Meta::decode(&e).is_err());
    }
}
