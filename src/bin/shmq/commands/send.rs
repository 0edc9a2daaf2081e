//! `shmq send`: each argument is a message; with none, each line of stdin is one (without
//! its `\n`); `--file` sends a whole file as one message. `--ids` prints each message's id.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use shmq::{Error, Producer, Queue};

use crate::args::format_size;

/// Sends the messages to queue `name`, waiting at most `timeout` for room for each; with
/// `ids`, prints the id of each on its own line once it is sent (under `--fsync always`:
/// once it is on disk).
pub fn run(name: &str, messages: Vec<String>, file: Option<PathBuf>, timeout: Duration, ids: bool) -> Result<()> {
    let mut tx = Producer::open(name).with_context(|| format!("open queue {name:?} to send"))?;
    let mut sent = 0u64;
    let mut send = |tx: &mut Producer, msg: &[u8]| -> Result<()> {
        let r = if timeout.is_zero() { tx.try_send(msg) } else { tx.send_timeout(msg, timeout) };
        let id = r.map_err(|e| explain(name, e, timeout, sent))?;
        sent += 1;
        if ids {
            writeln!(std::io::stdout(), "{id}").context("write stdout")?;
        }
        Ok(())
    };
    if let Some(path) = file {
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        send(&mut tx, &data)
    } else if !messages.is_empty() {
        messages.iter().try_for_each(|m| send(&mut tx, m.as_bytes()))
    } else {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).context("read stdin")? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            send(&mut tx, &line)?;
        }
    }
}

/// Turns a send error into a message that says what happened to which queue.
fn explain(name: &str, e: Error, timeout: Duration, sent: u64) -> anyhow::Error {
    let done = if sent > 0 { format!(" after {sent} message(s) were sent") } else { String::new() };
    match e {
        Error::Full => {
            let used = Queue::inspect(name)
                .map(|s| format!(" ({} of {} used)", format_size(s.used_bytes), format_size(s.config.capacity)))
                .unwrap_or_default();
            anyhow!("queue {name:?} is full{used}{done}: is anything receiving? pass --timeout to wait for room")
        }
        Error::Timeout => anyhow!("queue {name:?} stayed full for {timeout:?}{done}"),
        Error::Closed => anyhow!("queue {name:?} was removed{done}"),
        e => anyhow!(e).context(format!("send to queue {name:?}{done}")),
    }
}
