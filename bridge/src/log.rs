//! Log lines on stderr: `shmq-bridge: <UTC time> <level> <text>`.

use std::fmt::Arguments;
use std::time::{SystemTime, UNIX_EPOCH};

fn line(level: &str, msg: Arguments<'_>) {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = t.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    eprintln!("shmq-bridge: {h:02}:{m:02}:{s:02}.{:03} {level} {msg}", t.subsec_millis());
}

/// Progress and state changes.
pub fn info(msg: Arguments<'_>) {
    line("info", msg);
}

/// A failure the bridge retries.
pub fn warn(msg: Arguments<'_>) {
    line("warn", msg);
}

/// A failure that stops the bridge.
pub fn error(msg: Arguments<'_>) {
    line("error", msg);
}
