//! The queue commands: `create` and `rm` ([`admin`]), `send`, `recv`, `stat` and `ls`
//! ([`stat`]; a durable queue's part in [`durable`]), `subs` ([`subs`]), `dlq` ([`dlq`]: a
//! subscription's dead letters), `journal`
//! ([`journal`]), `log` ([`log`]: a durable queue's log directory), the monitoring ones,
//! `top` ([`top`]) and `exporter` ([`exporter`]), which share [`monitor`] and
//! [`prometheus`], and `bridge` ([`bridge`], which runs `shmq-bridge`). Each returns
//! `anyhow::Result`; errors name the queue and exit with status 1.

pub mod admin;
pub mod bridge;
pub mod dlq;
pub mod durable;
pub mod exporter;
pub mod journal;
pub mod log;
pub mod monitor;
pub mod prometheus;
pub mod recv;
pub mod send;
pub mod stat;
pub mod subs;
pub mod top;

/// The schema version of every `--json` output of the queue commands. Bump it only when a
/// field changes meaning or disappears; adding fields keeps it.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether the error is a write to a closed pipe (`shmq recv | head`): not worth a message.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
