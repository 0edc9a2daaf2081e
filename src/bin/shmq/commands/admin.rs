//! `shmq create` and `shmq rm`.

use anyhow::{Context, Result, bail};
use shmq::{Options, Queue};

use crate::ModeArg;
use crate::args::format_size;

/// Smallest and largest capacity the library accepts.
const MIN_CAPACITY: u64 = 1 << 10;
const MAX_CAPACITY: u64 = 1 << 40;

/// Creates queue `name`. Options the library would refuse are usage errors (status 2).
/// Without `max_message`, the default (64 KiB) or half the capacity if that is smaller.
pub fn create(name: &str, capacity: u64, max_message: Option<u64>, mode: ModeArg, permissions: u32) -> Result<()> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        crate::usage_error(format!(
            "invalid --capacity {capacity}: must be a power of two from 1KiB to 1TiB (it is not rounded)"
        ));
    }
    let max_message = max_message.unwrap_or((capacity / 2).min(u64::from(shmq::DEFAULT_MAX_MESSAGE)));
    if max_message > capacity / 2 || max_message > u64::from(u32::MAX) {
        crate::usage_error(format!(
            "invalid --max-message {max_message}: at most half the capacity ({})",
            format_size(capacity / 2)
        ));
    }
    let opts =
        Options::new().capacity(capacity).max_message(max_message as u32).mode(mode.into()).permissions(permissions);
    let cfg = Queue::create(name, opts).with_context(|| format!("create queue {name:?}"))?;
    println!(
        "created queue {name:?}: {}, capacity {}, max message {}, permissions {:04o}",
        cfg.mode,
        format_size(cfg.capacity),
        format_size(u64::from(cfg.max_message)),
        cfg.permissions
    );
    Ok(())
}

/// Removes every named queue; reports each failure and carries on with the rest.
pub fn rm(names: &[String]) -> Result<()> {
    let mut failed = 0;
    for name in names {
        if let Err(e) = Queue::remove(name) {
            eprintln!("shmq: error: remove queue {name:?}: {e}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} queue(s) not removed", names.len());
    }
    Ok(())
}
