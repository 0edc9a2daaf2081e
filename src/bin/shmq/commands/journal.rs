//! `shmq journal NAME`: a process that only journals a durable queue ([`shmq::Journaler`]):
//! every interval it copies what producers sent into the log and syncs it (unless the
//! queue's policy is `never`), until SIGINT or SIGTERM. It keeps the log close to the ring,
//! so producers rarely journal themselves, and syncs a queue under `interval:DUR` even when
//! no process holding a producer is running its timer.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shmq::{DurableStats, Fsync, Journaler, Queue};

use crate::args::{format_fsync, format_size};

/// The signal that asked us to stop; 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Relaxed: a flag polled by the loop; an atomic store is async-signal-safe.
    STOP.store(sig, Ordering::Relaxed);
}

/// The interval when `--interval` is not given and the queue has none of its own.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the loop sleeps before looking at `STOP` again.
const STOP_CHECK: Duration = Duration::from_millis(20);

fn stats(name: &str) -> Result<DurableStats> {
    let s = Queue::inspect(name).with_context(|| format!("inspect queue {name:?}"))?;
    s.durable.with_context(|| format!("queue {name:?} is not durable"))
}

/// Runs until SIGINT or SIGTERM (exit 0), or until the queue is removed (exit 0), or a
/// write or sync of the log fails (exit 1).
pub fn run(name: &str, interval: Option<Duration>) -> Result<()> {
    if interval.is_some_and(|d| d.is_zero()) {
        crate::usage_error("invalid value '0' for '--interval <DUR>': must be more than 0");
    }
    let journaler = Journaler::open(name).with_context(|| format!("journal queue {name:?}"))?;
    let config = Queue::inspect(name).with_context(|| format!("inspect queue {name:?}"))?.config;
    let Some(durable) = config.durable else { bail!("queue {name:?} is not durable") };
    let every = interval.unwrap_or(match durable.fsync {
        Fsync::Interval(d) => d,
        _ => DEFAULT_INTERVAL,
    });
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic (async-signal-safe), in a
        // process whose other threads never install handlers for these signals.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    if tty {
        writeln!(
            out,
            "journaling queue {name:?} (log in {}, fsync {}) every {every:?}; Ctrl-C stops",
            durable.dir.display(),
            format_fsync(durable.fsync)
        )?;
    }
    let first = stats(name)?;
    let started = Instant::now();
    let (mut rounds, mut last, mut last_print) = (0u64, first, Instant::now());
    let why = loop {
        // Relaxed: see `on_signal`.
        let sig = STOP.load(Ordering::Relaxed);
        if sig != 0 {
            break if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
        }
        journaler.run().with_context(|| format!("journal queue {name:?}"))?;
        rounds += 1;
        if journaler.is_closed() {
            break "the queue was removed";
        }
        if tty && last_print.elapsed() >= Duration::from_secs(1) {
            let now = stats(name)?;
            let secs = last_print.elapsed().as_secs_f64();
            writeln!(
                out,
                "written {} (+{}/s), durable {}, {} syncs (+{}), {} writes (+{}), {rounds} rounds",
                now.written,
                format_size(((now.written.saturating_sub(last.written)) as f64 / secs) as u64),
                now.durable,
                now.syncs,
                now.syncs.saturating_sub(last.syncs),
                now.writes,
                now.writes.saturating_sub(last.writes),
            )?;
            (last, last_print) = (now, Instant::now());
        }
        let wake = Instant::now() + every;
        loop {
            // Relaxed: see `on_signal`.
            let left = wake.saturating_duration_since(Instant::now());
            if left.is_zero() || STOP.load(Ordering::Relaxed) != 0 {
                break;
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    };
    // The last round (dropping the journaler runs once more), then the summary.
    drop(journaler);
    let end = Queue::inspect(name).ok().and_then(|s| s.durable).unwrap_or(last);
    writeln!(
        out,
        "journal {name:?} stopped ({why}) after {rounds} rounds in {:.1}s: written {} (+{}), durable {} (+{}), \
         {} syncs (+{}) by every process",
        started.elapsed().as_secs_f64(),
        end.written,
        format_size(end.written.saturating_sub(first.written)),
        end.durable,
        format_size(end.durable.saturating_sub(first.durable)),
        end.syncs,
        end.syncs.saturating_sub(first.syncs),
    )?;
    Ok(())
}
