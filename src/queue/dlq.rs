//! Dead letters: the messages a subscription with explicit acks gave up on (delivered
//! `max_deliveries` times without an ack, or rejected) go to the durable queue
//! `<queue>.<subscription>.dlq`, each wrapped in a [`DeadLetter`] that keeps its original id,
//! how often it was delivered, the last reason given and when it was moved.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::segment::{Config, shown};

use super::Options;

/// The first bytes of every dead letter.
const MAGIC: &[u8; 8] = b"SHMQDLQ1";
/// Bytes before the reason: magic, id, deliveries, reason length, time.
const HEAD: usize = 8 + 8 + 4 + 4 + 8;
/// The longest reason a dead letter keeps (longer ones are cut there).
pub const MAX_REASON: usize = 1024;

/// A message moved to a subscription's dead-letter queue, as [`DeadLetter::decode`] reads
/// it from one of that queue's messages.
///
/// ```
/// use shmq::DeadLetter;
/// let d = DeadLetter { id: 4096, deliveries: 5, reason: "bad amount".into(), unix_ns: 1, payload: b"order 7".to_vec() };
/// assert_eq!(DeadLetter::decode(&d.encode())?, d);
/// # Ok::<(), shmq::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message's id in the original queue (a message moved twice after a crash is
    /// recognisable by it).
    pub id: u64,
    /// How often it was delivered.
    pub deliveries: u32,
    /// The last reason given (by `nack` or `reject`), or why shmq moved it.
    pub reason: String,
    /// When it was moved, nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// The message.
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// The bytes of the dead-letter queue's message (the format `decode` reads; see
    /// `docs/ACKS.md`). A reason longer than `MAX_REASON` (1024) bytes is cut there.
    pub fn encode(&self) -> Vec<u8> {
        let mut r = self.reason.as_bytes();
        if r.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !self.reason.is_char_boundary(cut) {
                cut -= 1;
            }
            r = &r[..cut];
        }
        let mut b = Vec::with_capacity(HEAD + r.len() + self.payload.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.deliveries.to_le_bytes());
        b.extend_from_slice(&(r.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.unix_ns.to_le_bytes());
        b.extend_from_slice(r);
        b.extend_from_slice(&self.payload);
        b
    }

    /// Reads a message of a dead-letter queue. `Corrupt` if it is not one.
    pub fn decode(bytes: &[u8]) -> Result<DeadLetter> {
        let bad = |why: &str| Error::Corrupt(format!("not a dead letter: {why}"));
        if bytes.len() < HEAD || &bytes[..8] != MAGIC {
            return Err(bad("no dead-letter header"));
        }
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let len = u32_at(20) as usize;
        if len > MAX_REASON || HEAD + len > bytes.len() {
            return Err(bad("reason length out of bounds"));
        }
        let reason = String::from_utf8_lossy(&bytes[HEAD..HEAD + len]).into_owned();
        Ok(DeadLetter {
            id: u64_at(8),
            deliveries: u32_at(16),
            reason,
            unix_ns: u64_at(24),
            payload: bytes[HEAD + len..].to_vec(),
        })
    }
}

/// The name of the dead-letter queue of subscription `sub` of queue `queue`.
pub fn dlq_name(queue: &str, sub: &str) -> String {
    format!("{queue}.{sub}.dlq")
}

/// The log directory of that queue: `<sub>.dlq` in the queue's own.
pub(crate) fn dlq_dir(parent: &Config, sub: &str) -> Option<PathBuf> {
    parent.durable.as_ref().map(|d| d.dir.join(format!("{sub}.dlq")))
}

/// The options of that queue: durable beside its queue's log, synced as it is, room for the
/// largest message with the longest reason.
pub(crate) fn dlq_options(parent: &Config, sub: &str) -> Result<Options> {
    let (Some(d), Some(dir)) = (&parent.durable, dlq_dir(parent, sub)) else {
        return Err(Error::InvalidArgument(format!(
            "queue {} is volatile: explicit acks and dead letters need a durable queue",
            shown(&parent.name)
        )));
    };
    let max_message = parent.max_message as u64 + (HEAD + MAX_REASON) as u64;
    let capacity = parent.capacity.max((4 * max_message).next_power_of_two());
    Ok(Options::new()
        .capacity(capacity)
        .max_message(max_message as u32)
        .mode(crate::Mode::Mpsc)
        .permissions(parent.permissions)
        .durable(dir)
        .fsync(d.fsync))
}

/// Creates (or opens, or restores) the dead-letter queue of `sub`.
pub(crate) fn ensure(parent: &Config, sub: &str) -> Result<String> {
    let name = dlq_name(&parent.name, sub);
    crate::segment::validate_name(&name)
        .map_err(|e| Error::InvalidArgument(format!("the dead-letter queue's name {}: {e}", shown(&name))))?;
    let options = dlq_options(parent, sub)?;
    super::Queue::open_or_create(&name, options)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_round_trips_and_garbage_is_refused() {
        let d = DeadLetter { id: 7, deliveries: 3, reason: "é".repeat(600), unix_ns: 9, payload: vec![1, 2, 3] };
        let back = DeadLetter::decode(&d.encode()).unwrap();
        assert_eq!(back.reason.len(), 1024, "cut at a character boundary at most 1024 bytes");
        assert_eq!((back.id, back.deliveries, back.unix_ns, back.payload), (7, 3, 9, vec![1, 2, 3]));
        assert!(DeadLetter::decode(b"SHMQDLQ1").is_err());
        let mut b = d.encode();
        b[20] = 0xff;
        assert!(DeadLetter::decode(&b).is_err());
    }
}
