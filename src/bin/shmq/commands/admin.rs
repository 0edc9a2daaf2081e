//! `shmq create` and `shmq rm`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use shmq::{Error, Fsync, Options, Queue, Retain};

use crate::ModeArg;
use crate::args::{TypedSize, format_fsync, format_size};

/// `create --durable DIR` and its options (`None`: the library's defaults).
#[derive(Debug)]
pub struct Durable {
    /// The log directory.
    pub dir: PathBuf,
    /// `--fsync`.
    pub fsync: Option<Fsync>,
    /// `--max-log`.
    pub max_log: Option<u64>,
    /// `--retain`.
    pub retain: Option<Retain>,
}

/// Creates queue `name`. `capacity` was checked by its parser; a `max_message` above half of
/// it is a usage error (status 2). Without `max_message`, the default (64 KiB) or half the
/// capacity if that is smaller.
pub fn create(
    name: &str,
    capacity: u64,
    max_message: Option<TypedSize>,
    mode: ModeArg,
    permissions: u32,
    durable: Option<Durable>,
) -> Result<()> {
    let mut opts = Options::new().capacity(capacity).mode(mode.into()).permissions(permissions);
    if let Some(d) = &durable {
        opts = opts.durable(&d.dir).fsync(d.fsync.unwrap_or_default()).retain(d.retain.unwrap_or_default());
        if let Some(n) = d.max_log {
            opts = opts.max_log_bytes(n);
        }
    }
    // Half the capacity, less a durable record's own bytes.
    let limit = opts.max_message_limit();
    let max_message = match max_message {
        Some(m) if m.bytes > limit => crate::usage_error(format!(
            "invalid value '{}' for '--max-message': must be at most half the capacity{} ({limit} bytes for a capacity of {})",
            m.typed,
            if durable.is_some() { ", less the 16 bytes each durable record carries" } else { "" },
            format_size(capacity),
        )),
        Some(m) => m.bytes,
        None => limit.min(u64::from(shmq::DEFAULT_MAX_MESSAGE)),
    };
    // Cannot fail: the parser keeps max_message below 2^32.
    let opts = opts.max_message(u32::try_from(max_message)?);
    let cfg = Queue::create(name, opts).map_err(|e| match e {
        // These already say what was being done to which queue (`create "x": ...`), so
        // more context would only repeat it.
        Error::Io { .. } | Error::Permission(_) | Error::Exists(_) | Error::InvalidName(_) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("create queue {name:?}")),
    })?;
    println!(
        "created queue {name:?}: {}, capacity {}, max message {}, permissions {:04o}",
        cfg.mode,
        format_size(cfg.capacity),
        format_size(u64::from(cfg.max_message)),
        cfg.permissions
    );
    if let Some(d) = &cfg.durable {
        let retain = match d.retain {
            Retain::Acked => "acked".to_owned(),
            Retain::Bytes(n) => format_size(n),
        };
        println!(
            "durable: log in {}, fsync {}, max log {}, retain {}",
            d.dir.display(),
            format_fsync(d.fsync),
            format_size(d.max_log_bytes),
            retain
        );
    }
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
