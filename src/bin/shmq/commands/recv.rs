//! `shmq recv`: prints each message on its own line, as text, hex or JSON.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use shmq::{Consumer, Error, Subscription};

/// How a message is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// As is when it is text without control characters; escaped otherwise ([`escape`]).
    Text,
    /// Lowercase hex.
    Hex,
    /// One JSON object per line: [`JsonMessage`].
    Json,
}

/// `recv --json`: one line per message.
#[derive(Serialize)]
struct JsonMessage<'a> {
    schema_version: u32,
    queue: &'a str,
    /// 0 for the first message this command received.
    index: u64,
    len: usize,
    /// The message as a string when it is valid UTF-8, else null.
    text: Option<&'a str>,
    /// The message bytes in lowercase hex (always present, exact).
    hex: String,
}

/// Receives up to `count` messages (`None`: until the queue is removed), waiting at most
/// `timeout` for each (`None`: forever), as a member of `subscription` (`None` or
/// `"default"`: as the default subscription's consumer). Exit 1 if nothing arrived.
pub fn run(
    name: &str,
    subscription: Option<&str>,
    count: Option<u64>,
    timeout: Option<Duration>,
    format: Format,
) -> Result<()> {
    let subscription = subscription.filter(|&s| s != Subscription::DEFAULT);
    let mut rx = match subscription {
        None => Consumer::open(name).map_err(|e| match e {
            // The queue is there but its default subscription was removed.
            Error::NotFound(_) if shmq::Queue::inspect(name).is_ok() => {
                super::subs::explain(name, Subscription::DEFAULT, "read", e)
            }
            e => anyhow::Error::new(e).context(format!("open queue {name:?} to receive")),
        })?,
        Some(sub) => Consumer::subscribe(name, sub).map_err(|e| super::subs::explain(name, sub, "join", e))?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut got = 0u64;
    while count.is_none_or(|c| got < c) {
        let msg = match timeout {
            None => rx.recv().map(Some),
            Some(t) if t.is_zero() => rx.try_recv(),
            Some(t) => match rx.recv_timeout(t) {
                Err(Error::Timeout) => Ok(None),
                r => r.map(Some),
            },
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(Error::Lapped { missed_bytes }) => {
                // Our output so far first, then the notice, for a reader of both streams.
                out.flush()?;
                let sub = subscription.unwrap_or(Subscription::DEFAULT);
                eprintln!(
                    "shmq: subscription {sub:?} of queue {name:?} fell behind its lag limit and missed \
                     {missed_bytes} bytes of messages; going on with the newest"
                );
                continue;
            }
            Err(Error::Closed) if count.is_none() || got > 0 => break,
            Err(Error::Closed) => bail!("{}", closed(name, subscription)),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("receive from queue {name:?}"))),
        };
        print_message(&mut out, name, got, &msg, format)?;
        drop(msg);
        got += 1;
        if count.is_none() {
            out.flush()?;
        }
    }
    out.flush()?;
    if got == 0 && count != Some(0) {
        match timeout {
            Some(t) if t.is_zero() => bail!("queue {name:?} is empty"),
            Some(t) => bail!("no message arrived in queue {name:?} within {t:?}"),
            None => bail!("queue {name:?}: nothing received"),
        }
    }
    Ok(())
}

/// Why a receive returned `Closed`: the queue was removed, or (for a member) its
/// subscription was.
fn closed(name: &str, subscription: Option<&str>) -> String {
    match subscription {
        Some(sub) if Subscription::list(name).is_ok_and(|l| l.iter().all(|s| s.name != sub)) => {
            format!("subscription {sub:?} of queue {name:?} was removed")
        }
        _ => format!("queue {name:?} was removed"),
    }
}

fn print_message(out: &mut impl Write, queue: &str, index: u64, msg: &[u8], format: Format) -> Result<()> {
    match format {
        Format::Text => {
            out.write_all(escape(msg).as_bytes())?;
            out.write_all(b"\n")?;
        }
        Format::Hex => writeln!(out, "{}", hex(msg))?,
        Format::Json => {
            let j = JsonMessage {
                schema_version: super::SCHEMA_VERSION,
                queue,
                index,
                len: msg.len(),
                text: std::str::from_utf8(msg).ok(),
                hex: hex(msg),
            };
            serde_json::to_writer(&mut *out, &j)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The message as one line: valid UTF-8 without control characters as is; otherwise `\n`,
/// `\t`, `\r` and `\\` for those characters, `\xNN` for the other ASCII control bytes and for
/// bytes that are not UTF-8, and `\u{NN}` for the C1 control characters (U+0080 to U+009F).
/// This is what `recv --help` promises.
pub fn escape(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        if !s.chars().any(char::is_control) {
            return s.to_owned();
        }
    }
    let mut s = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c if c.is_ascii_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
                c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => s.push(c),
            }
        }
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes_through_and_binary_is_escaped() {
        assert_eq!(escape(b"hello world"), "hello world");
        assert_eq!(escape("grüße".as_bytes()), "grüße");
        assert_eq!(escape(b"a\nb\\c"), "a\\nb\\\\c");
        assert_eq!(escape(b"\x00\xff"), "\\x00\\xff");
        assert_eq!(escape(b"a\tb\rc\x1b\x7f"), "a\\tb\\rc\\x1b\\x7f");
        assert_eq!(escape("\u{85}é".as_bytes()), "\\u{85}é");
        assert_eq!(hex(b"\x00\xffA"), "00ff41");
    }
}
