//! `shmq subs create`, `shmq subs ls` and `shmq subs rm`: a queue's subscriptions, each of
//! which sees every message sent after its creation, its members sharing them.
//!
//! `subs ls --json` and `stat --json` print subscriptions as [`SubscriptionJson`].

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use shmq::{Error, Queue, Subscription, SubscriptionInfo, SubscriptionOptions};

use super::stat::Counters;
use crate::args::format_size;

/// One member of a subscription in `--json` output.
#[derive(Serialize)]
pub struct MemberJson {
    /// Pid at joining (pids are reused: information only).
    pid: u32,
    /// Whether the kernel says it lives (a stopped process is alive).
    alive: bool,
    /// The positions `[start, end)` it has claimed and not released yet; null if none.
    claimed: Option<Span>,
    heartbeat_unix_ns: u64,
    counters: Counters,
    /// Its participant slot.
    slot: usize,
    /// `alive`, `stuck` (only when watched over time, as `stat --stuck-after`) or `dead`.
    state: &'static str,
    /// How long it has held messages without taking any; null when not judged.
    stalled_s: Option<f64>,
}

/// A span of stream positions, `[start, end)`.
#[derive(Serialize)]
pub struct Span {
    start: u64,
    end: u64,
}

/// One subscription in `--json` output (`subs ls`, `stat`).
#[derive(Serialize)]
pub struct SubscriptionJson {
    name: String,
    /// Bytes; null: no limit (producers wait for it).
    lag_limit: Option<u64>,
    /// Position (message id) of the next message it hands out.
    position: u64,
    /// Bytes it is behind the producers (headers and padding included).
    lag_bytes: u64,
    /// About how many messages that is.
    lag_messages: u64,
    /// Lapped and not yet rejoined by a member.
    detached: bool,
    /// Times it was detached for falling behind its lag limit.
    lapped: u64,
    missed_bytes: u64,
    /// Messages handed out again because the member holding them died.
    redelivered: u64,
    /// Totals over its members, past and present.
    received: Counters,
    members: Vec<MemberJson>,
}

impl From<&SubscriptionInfo> for SubscriptionJson {
    fn from(s: &SubscriptionInfo) -> SubscriptionJson {
        SubscriptionJson {
            name: s.name.clone(),
            lag_limit: s.lag_limit,
            position: s.position,
            lag_bytes: s.lag_bytes,
            lag_messages: s.lag_messages,
            detached: s.detached,
            lapped: s.lapped,
            missed_bytes: s.missed_bytes,
            redelivered: s.redelivered,
            received: s.received.into(),
            members: s
                .members
                .iter()
                .map(|m| MemberJson {
                    pid: m.pid,
                    alive: m.alive,
                    claimed: m.claimed.map(|(start, end)| Span { start, end }),
                    heartbeat_unix_ns: m.heartbeat_unix_ns,
                    counters: m.counters.into(),
                    slot: m.slot,
                    state: super::monitor::state(m.alive, m.progress),
                    stalled_s: super::stat::stalled_s(m.progress),
                })
                .collect(),
        }
    }
}

/// `subs ls --json`.
#[derive(Serialize)]
pub struct SubsLsJson {
    schema_version: u32,
    queue: String,
    subscriptions: Vec<SubscriptionJson>,
}

/// Turns a library error about subscription `sub` of queue `queue` into one that says which
/// of the two is missing (the library's `NotFound` text names only "a queue").
pub fn explain(queue: &str, sub: &str, doing: &str, e: Error) -> anyhow::Error {
    let what = format!("{doing} subscription {sub:?} of queue {queue:?}");
    match e {
        Error::NotFound(_) if Queue::inspect(queue).is_ok() => {
            anyhow!("{what}: queue {queue:?} has no subscription {sub:?} (shmq subs ls {queue} lists them)")
        }
        Error::NotFound(_) => anyhow!("{what}: no queue named {queue:?}"),
        e => anyhow::Error::new(e).context(what),
    }
}

fn lag_limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "none".to_owned(), format_size)
}

/// `shmq subs create QUEUE NAME`.
pub fn create(queue: &str, name: &str, lag_limit: Option<u64>, from: shmq::From) -> Result<()> {
    // Only for the message: whether this call made it or found it made.
    let existed = Subscription::list(queue).is_ok_and(|l| l.iter().any(|s| s.name == name));
    let options = SubscriptionOptions::new().start(from).lag_limit(lag_limit);
    Subscription::create(queue, name, options).map_err(|e| explain(queue, name, "create", e))?;
    let what = if existed { "exists already with these options" } else { "created" };
    println!("subscription {name:?} of queue {queue:?} {what}: lag limit {}", lag_limit_text(lag_limit));
    Ok(())
}

/// `shmq subs rm QUEUE NAME...`: removes each; reports each failure and carries on.
pub fn rm(queue: &str, names: &[String]) -> Result<()> {
    let mut failed = 0;
    for name in names {
        if let Err(e) = Subscription::remove(queue, name) {
            eprintln!("shmq: error: {}", crate::render(&explain(queue, name, "remove", e)));
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} subscription(s) of queue {queue:?} not removed", names.len());
    }
    Ok(())
}

/// `shmq subs ls QUEUE`.
pub fn ls(queue: &str, json: bool) -> Result<()> {
    let subs = Subscription::list(queue).map_err(|e| match e {
        Error::NotFound(_) => anyhow!("list subscriptions of queue {queue:?}: no queue named {queue:?}"),
        e => anyhow::Error::new(e).context(format!("list subscriptions of queue {queue:?}")),
    })?;
    if json {
        let j = SubsLsJson {
            schema_version: super::SCHEMA_VERSION,
            queue: queue.to_owned(),
            subscriptions: subs.iter().map(SubscriptionJson::from).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!("queue {queue:?}: {} subscription(s)", subs.len());
    print_table(&subs, "");
    Ok(())
}

/// The subscriptions as a table, each followed by its members, every line after `indent`.
pub fn print_table(subs: &[SubscriptionInfo], indent: &str) {
    if subs.is_empty() {
        println!("{indent}none");
        return;
    }
    let w = subs.iter().map(|s| s.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{indent}{:<w$} {:>9} {:>14} {:>10} {:>8} {:<8} {:>6} {:>10} {:>11} {:>10}",
        "name", "lag limit", "position", "lag", "~msgs", "state", "lapped", "missed", "redelivered", "received"
    );
    for s in subs {
        println!(
            "{indent}{:<w$} {:>9} {:>14} {:>10} {:>8} {:<8} {:>6} {:>10} {:>11} {:>10}",
            s.name,
            lag_limit_text(s.lag_limit),
            s.position,
            format_size(s.lag_bytes),
            s.lag_messages,
            if s.detached { "detached" } else { "ok" },
            s.lapped,
            format_size(s.missed_bytes),
            s.redelivered,
            s.received.messages
        );
        if s.members.is_empty() {
            println!("{indent}  no members");
        }
        for m in &s.members {
            let claimed = match m.claimed {
                Some((start, end)) => format!("claimed [{start}, {end})"),
                None => "nothing claimed".to_owned(),
            };
            println!(
                "{indent}  member pid {} {}, {claimed}, received {} messages",
                m.pid,
                super::monitor::state(m.alive, m.progress),
                m.counters.messages
            );
        }
    }
}
