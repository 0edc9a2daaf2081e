//! `shmq log dump` and `shmq log verify`: read a durable queue's log directory without
//! changing it (the lock is taken shared, so neither runs during a recovery).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde::Serialize;
use shmq::Error;
use shmq::log::fs::RealFs;
use shmq::log::{Frame, Log};

use super::recv::escape;

/// Bytes of payload shown by the text dump (and by `dlq ls`).
pub const PREVIEW: usize = 48;

/// The first [`PREVIEW`] bytes of `payload` on one line, escaped as `recv` prints messages,
/// followed by `...` when there is more.
pub fn preview(payload: &[u8]) -> String {
    let shown = escape(&payload[..payload.len().min(PREVIEW)]);
    if payload.len() > PREVIEW { format!("{shown}...") } else { shown }
}

/// `log dump --json`: one line per message.
#[derive(Serialize)]
struct JsonFrame<'a> {
    schema_version: u32,
    /// The message id: its position in the stream.
    id: u64,
    /// Producer timestamp, ns since the Unix epoch.
    ts_ns: u64,
    /// The same as RFC 3339, UTC.
    time: &'a str,
    /// Bytes the frame occupies in the log.
    size: u64,
    /// Payload length.
    len: usize,
    /// Always true: dump prints validated frames only, and stops at the first that is not.
    crc_ok: bool,
    /// The whole payload.
    payload_base64: String,
}

/// `ns` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem / 60 % 60, rem % 60, ns % 1_000_000_000)
}

fn print(out: &mut impl Write, f: &Frame, json: bool) -> Result<()> {
    let time = rfc3339(f.ts);
    if json {
        let j = JsonFrame {
            schema_version: super::SCHEMA_VERSION,
            id: f.id,
            ts_ns: f.ts,
            time: &time,
            size: f.size,
            len: f.payload.len(),
            crc_ok: true,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&f.payload),
        };
        serde_json::to_writer(&mut *out, &j)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}\t{time}\t{}\t{}\tcrc ok\t{}", f.id, f.size, f.payload.len(), preview(&f.payload))?;
    }
    Ok(())
}

/// The log directory: `dir`, or that of queue `name` as its segment records it.
pub fn dir_of(name: Option<&str>, dir: Option<std::path::PathBuf>) -> Result<std::path::PathBuf> {
    if let Some(dir) = dir {
        return Ok(dir);
    }
    let name = name.expect("clap requires a name or --dir");
    let snap = shmq::Queue::inspect(name).with_context(|| format!("queue {name:?}"))?;
    match snap.config.durable {
        Some(d) => Ok(d.dir),
        None => bail!("queue {name:?} is not durable: it has no log"),
    }
}

/// Prints every message of the log in `dir` from `from` (default: the oldest), one per line.
/// A log damaged below its mark prints the messages before the damage, then fails.
pub fn dump(dir: &Path, from: Option<u64>, json: bool) -> Result<()> {
    let shown = dir.display();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match Log::inspect(Arc::new(RealFs), dir) {
        Ok((log, rec)) => {
            let from = from.unwrap_or(rec.start);
            // An id that is not a message's starts at the next message: read from its
            // segment's start (a message starts there) and skip what is below it.
            let start = (from / log.seg_size() * log.seg_size()).max(rec.start);
            for f in log.frames(start, rec.end) {
                let f = f.with_context(|| format!("dump log {shown} from position {from}"))?;
                if f.id >= from {
                    print(&mut out, &f, json)?;
                }
            }
            out.flush()?;
            if !rec.tail_clean {
                eprintln!(
                    "shmq: the log ends at position {}; bytes after it ({} valid-looking frames) would be cut by a recovery",
                    rec.end, rec.dropped
                );
            }
            Ok(())
        }
        Err(e @ Error::Corrupt(_)) => {
            // Show what can be read, up to the damage.
            let log = Log::open_read(Arc::new(RealFs), dir).with_context(|| format!("open log {shown}"))?;
            let from = from.unwrap_or_else(|| log.stats().ok().and_then(|s| s.oldest).unwrap_or(0));
            for f in log.frames(from, u64::MAX) {
                let Ok(f) = f else { break };
                print(&mut out, &f, json)?;
            }
            out.flush()?;
            Err(anyhow::Error::new(e).context(format!("log {shown}")))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("open log {shown}"))),
    }
}

/// Checks the log in `dir`: exit 0 only if it is intact (every header, META and frame valid
/// and nothing after the end that a recovery would cut). A progress bar on a terminal.
pub fn verify(dir: &Path) -> Result<()> {
    let shown = dir.display();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}") {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let result = Log::inspect_with_progress(Arc::new(RealFs), dir, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let (log, rec) = match result {
        Ok(r) => r,
        Err(e @ (Error::Corrupt(_) | Error::Incompatible(_))) => bail!("log {shown} is not intact: {e}"),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("verify log {shown}"))),
    };
    if !rec.tail_clean {
        bail!(
            "log {shown} is not intact: it ends at position {} (synced through {}) and bytes follow ({} valid-looking \
             frames); a recovery would cut them",
            rec.end,
            rec.synced_through,
            rec.dropped
        );
    }
    let st = log.stats().with_context(|| format!("stat log {shown}"))?;
    println!(
        "intact: {} messages, positions {}..{}, synced through {}, id ceiling {}, {} segments, {} bytes",
        rec.messages, rec.start, rec.end, rec.synced_through, rec.ceiling, st.segments, st.bytes
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_print_as_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339(1_796_069_405_123_456_789), "2026-11-30T20:10:05.123456789Z");
    }
}
