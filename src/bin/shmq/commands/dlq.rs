//! `shmq dlq ls|show|purge`: the dead letters of a subscription with explicit acks, which
//! wait in the durable queue `<queue>.<subscription>.dlq`, one [`DeadLetter`] per message.
//!
//! `ls` and `show` take nothing: they read the dead-letter queue's log with a
//! [`Reader`](shmq::Reader) from the position its default subscription (the one a plain
//! consumer reads) hands out next, so they show what a consumer would still receive. Before
//! reading they journal the queue once ([`Journaler`]), as any handle of it does: dead
//! letters moved by members that are still running may be in its ring only, and the log is
//! what a reader reads. Journaling copies what producers committed into the log files, which
//! changes nothing that anyone receives; without write access to the queue it is skipped
//! and what is in the log is shown. `purge` is a consumer: it receives, and so removes, every
//! dead letter.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde::Serialize;
use shmq::{Ack, Consumer, DeadLetter, Error, From, Fsync, Journaler, Queue, Reader, Subscription};

use super::log::{preview, rfc3339};
use super::recv::{escape, hex};

/// Characters of a reason shown by `dlq ls` (`dlq show` shows all of it).
const REASON_PREVIEW: usize = 40;

/// One message of a dead-letter queue.
struct Entry {
    /// Its id in the dead-letter queue.
    dlq_id: u64,
    /// What it holds; the decoder's complaint if it is not a dead letter.
    letter: std::result::Result<DeadLetter, String>,
}

/// A dead letter in `--json` output.
#[derive(Serialize)]
struct LetterJson {
    /// The message's id in the original queue.
    id: u64,
    /// Its id in the dead-letter queue.
    dlq_id: u64,
    /// How often it was delivered.
    deliveries: u32,
    /// When it was moved, ns since the Unix epoch.
    unix_ns: u64,
    /// The same as RFC 3339, UTC.
    time: String,
    /// The last reason given (by nack or reject), or why shmq moved it.
    reason: String,
    /// Payload length.
    len: usize,
    /// `ls`: the first bytes, escaped as `recv` prints messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    /// `show`: the whole payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

impl LetterJson {
    fn new(dlq_id: u64, d: &DeadLetter, whole: bool) -> LetterJson {
        LetterJson {
            id: d.id,
            dlq_id,
            deliveries: d.deliveries,
            unix_ns: d.unix_ns,
            time: rfc3339(d.unix_ns),
            reason: d.reason.clone(),
            len: d.payload.len(),
            preview: (!whole).then(|| preview(&d.payload)),
            payload_base64: whole.then(|| base64::engine::general_purpose::STANDARD.encode(&d.payload)),
        }
    }
}

/// A message of the dead-letter queue that is not a dead letter, in `ls --json`.
#[derive(Serialize)]
struct BadJson {
    dlq_id: u64,
    error: String,
}

/// `dlq ls --json`.
#[derive(Serialize)]
struct LsJson<'a> {
    schema_version: u32,
    queue: &'a str,
    subscription: &'a str,
    /// The dead-letter queue's name.
    dlq: &'a str,
    dead_letters: Vec<LetterJson>,
    /// Its messages that are not dead letters (written there by something else).
    not_dead_letters: Vec<BadJson>,
}

/// `dlq show --json`.
#[derive(Serialize)]
struct ShowJson<'a> {
    schema_version: u32,
    queue: &'a str,
    subscription: &'a str,
    dlq: &'a str,
    #[serde(flatten)]
    letter: LetterJson,
}

/// The dead-letter queue of subscription `sub` of `queue`, if it exists; otherwise an error
/// that says what is missing: the queue, the subscription, its explicit acks, or the
/// dead-letter queue itself.
fn locate(queue: &str, sub: &str, doing: &str) -> Result<String> {
    let name = shmq::dlq_name(queue, sub);
    let what = format!("{doing} dead letters of subscription {sub:?} of queue {queue:?}");
    match Queue::inspect(&name) {
        Ok(_) => return Ok(name),
        Err(Error::NotFound(_) | Error::InvalidName(_)) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{what}: open its dead-letter queue {name:?}"))),
    }
    let subs = match Subscription::list(queue) {
        Ok(s) => s,
        Err(Error::NotFound(_)) => bail!("{what}: no queue named {queue:?}"),
        Err(e) => return Err(anyhow::Error::new(e).context(what)),
    };
    match subs.iter().find(|s| s.name == sub) {
        None => bail!("{what}: queue {queue:?} has no subscription {sub:?} (shmq subs ls {queue} lists them)"),
        Some(s) if s.ack != Ack::Explicit => bail!(
            "{what}: subscription {sub:?} acknowledges by receiving (ack auto), so it has no dead letters; \
             subscriptions created with --ack explicit do"
        ),
        Some(_) => bail!("{what}: its dead-letter queue {name:?} does not exist (was it removed?)"),
    }
}

/// Every dead letter waiting in dead-letter queue `name`: from the position its default
/// subscription hands out next to the end of its log, after journaling it once (see the
/// module docs). Reads only the log; takes nothing.
fn waiting(name: &str) -> Result<Vec<Entry>> {
    match Journaler::open(name) {
        Ok(j) => {
            if let Err(e) = j.run() {
                eprintln!("shmq: could not journal queue {name:?} ({e}); showing what its log holds");
            }
        }
        // Read access only: the log is all we can show.
        Err(Error::Permission(_)) => {}
        Err(e) => eprintln!("shmq: could not journal queue {name:?} ({e}); showing what its log holds"),
    }
    let snap = Queue::inspect(name).with_context(|| format!("inspect dead-letter queue {name:?}"))?;
    let from = match snap.subscriptions.iter().find(|s| s.name == Subscription::DEFAULT) {
        Some(s) => From::Id(s.position),
        None => {
            eprintln!(
                "shmq: dead-letter queue {name:?} has no default subscription (it was removed): \
                 showing every dead letter its log still keeps"
            );
            From::Start
        }
    };
    let mut reader = Reader::open(name, from).with_context(|| format!("read the log of queue {name:?}"))?;
    let mut out = Vec::new();
    while let Some(m) = reader.try_recv().with_context(|| format!("read the log of queue {name:?}"))? {
        out.push(Entry { dlq_id: m.id(), letter: DeadLetter::decode(&m).map_err(|e| e.to_string()) });
    }
    // What producers had sent when we looked but the log did not hold yet (we could not
    // journal, or a producer was still writing): not shown, and said so.
    if let (Some(d), Some(c)) = (snap.durable, &snap.config.durable) {
        let readable = if c.fsync == Fsync::Always { d.durable } else { d.written };
        if readable < snap.tail {
            eprintln!(
                "shmq: {} bytes of messages sent to queue {name:?} are not in its log yet and are not shown; \
                 run again in a moment",
                snap.tail - readable
            );
        }
    }
    Ok(out)
}

/// Up to `n` characters of `s`, then `...` if there was more.
fn cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// `shmq dlq ls QUEUE SUB`.
pub fn ls(queue: &str, sub: &str, json: bool) -> Result<()> {
    let name = locate(queue, sub, "list")?;
    let entries = waiting(&name)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        let mut j = LsJson {
            schema_version: super::SCHEMA_VERSION,
            queue,
            subscription: sub,
            dlq: &name,
            dead_letters: Vec::new(),
            not_dead_letters: Vec::new(),
        };
        for e in &entries {
            match &e.letter {
                Ok(d) => j.dead_letters.push(LetterJson::new(e.dlq_id, d, false)),
                Err(why) => j.not_dead_letters.push(BadJson { dlq_id: e.dlq_id, error: why.clone() }),
            }
        }
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    let letters = entries.iter().filter(|e| e.letter.is_ok()).count();
    writeln!(out, "subscription {sub:?} of queue {queue:?}: {letters} dead letter(s) in queue {name:?}")?;
    if entries.is_empty() {
        out.flush()?;
        return Ok(());
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| match &e.letter {
            Ok(d) => [
                d.id.to_string(),
                d.deliveries.to_string(),
                rfc3339(d.unix_ns),
                d.payload.len().to_string(),
                cut(&escape(d.reason.as_bytes()), REASON_PREVIEW),
                preview(&d.payload),
            ],
            Err(why) => [
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("not a dead letter (id {} in the dead-letter queue): {why}", e.dlq_id),
                String::new(),
            ],
        })
        .collect();
    let head = ["id", "deliveries", "moved", "len", "reason", "payload"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&head.map(String::from)).chain(&rows) {
        writeln!(
            out,
            "{:>w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `shmq dlq show QUEUE SUB ID`: the dead letter of the message with id `id` in `queue`.
pub fn show(queue: &str, sub: &str, id: u64, json: bool, as_hex: bool) -> Result<()> {
    let name = locate(queue, sub, "show")?;
    let entries = waiting(&name)?;
    let mut found = entries.iter().filter_map(|e| match &e.letter {
        Ok(d) if d.id == id => Some((e.dlq_id, d)),
        _ => None,
    });
    let Some((dlq_id, d)) = found.next() else {
        return Err(anyhow!(
            "show dead letter {id} of subscription {sub:?} of queue {queue:?}: none of the {} dead letter(s) \
             waiting in queue {name:?} is message {id} (shmq dlq ls {queue} {sub} lists them)",
            entries.iter().filter(|e| e.letter.is_ok()).count()
        ));
    };
    let again = found.count();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        let j = ShowJson {
            schema_version: super::SCHEMA_VERSION,
            queue,
            subscription: sub,
            dlq: &name,
            letter: LetterJson::new(dlq_id, d, true),
        };
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
    } else {
        writeln!(out, "id          {}", d.id)?;
        writeln!(out, "queue       {queue} (subscription {sub})")?;
        writeln!(out, "dlq         {name} (id {dlq_id} there)")?;
        writeln!(out, "deliveries  {}", d.deliveries)?;
        writeln!(out, "moved       {}", rfc3339(d.unix_ns))?;
        writeln!(out, "reason      {}", escape(d.reason.as_bytes()))?;
        writeln!(out, "len         {}", d.payload.len())?;
        let payload = if as_hex { hex(&d.payload) } else { escape(&d.payload) };
        writeln!(out, "payload     {payload}")?;
    }
    out.flush()?;
    if again > 0 {
        eprintln!(
            "shmq: {again} more dead letter(s) carry message id {id} (moved again after a crash); this is the first"
        );
    }
    Ok(())
}

/// `shmq dlq purge QUEUE SUB`: receives every message of the dead-letter queue as its
/// default consumer, which removes them. Without `yes`, asks on a terminal and refuses
/// otherwise.
pub fn purge(queue: &str, sub: &str, yes: bool) -> Result<()> {
    let name = locate(queue, sub, "purge")?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            crate::usage_error(format!(
                "purging removes the dead letters of subscription {sub:?} of queue {queue:?} for good: \
                 add --yes (stdin is not a terminal to ask on)"
            ));
        }
        let n = waiting(&name)?.len();
        eprint!("remove the {n} dead letter(s) waiting in queue {name:?} for good? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not purged: dead letters of subscription {sub:?} of queue {queue:?} kept");
        }
    }
    let mut rx = Consumer::open(&name).map_err(|e| match e {
        Error::NotFound(_) if Queue::inspect(&name).is_ok() => {
            anyhow!("purge dead-letter queue {name:?}: its default subscription was removed; remove the queue instead")
        }
        e => anyhow::Error::new(e).context(format!("purge dead-letter queue {name:?}: open it as its consumer")),
    })?;
    let (mut purged, mut other) = (0u64, 0u64);
    while let Some(m) = rx.try_recv().with_context(|| format!("purge dead-letter queue {name:?}"))? {
        if DeadLetter::decode(&m).is_ok() {
            purged += 1;
        } else {
            other += 1;
        }
    }
    let other = if other > 0 { format!(" (and {other} message(s) that were not dead letters)") } else { String::new() };
    println!("purged {purged} dead letter(s){other} of subscription {sub:?} of queue {queue:?} from queue {name:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short", 40), "short");
        assert_eq!(cut("abcdef", 3), "abc...");
        assert_eq!(cut("ééé", 2), "éé...");
        assert_eq!(cut("abc", 3), "abc");
    }
}
