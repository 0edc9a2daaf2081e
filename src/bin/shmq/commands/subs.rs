//! `shmq subs create`, `shmq subs ls` and `shmq subs rm`: a queue's subscriptions, each of
//! which sees every message sent after its creation, its members sharing them.
//!
//! `subs ls --json` and `stat --json` print subscriptions as [`SubscriptionJson`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use shmq::{Ack, Error, Queue, Subscription, SubscriptionInfo, SubscriptionOptions};

use super::stat::Counters;
use crate::AckArg;
use crate::args::{format_age, format_size};

/// `subs create --ack` and the options that go with `--ack explicit` (`None`: the library's
/// defaults).
#[derive(Debug)]
pub struct AckOptions {
    /// `--ack`.
    pub ack: AckArg,
    /// `--ack-wait`.
    pub ack_wait: Option<Duration>,
    /// `--max-in-flight`.
    pub max_in_flight: Option<u32>,
    /// `--max-deliveries`.
    pub max_deliveries: Option<u32>,
}

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
    /// Messages handed out again: because the member holding them died, or (explicit acks)
    /// nacked or held past the ack wait.
    redelivered: u64,
    /// How members acknowledge: "auto" (receiving is acknowledging) or "explicit".
    ack: &'static str,
    /// Explicit acks (null for auto): messages handed out and not yet acknowledged, or
    /// waiting to be handed out again.
    in_flight: Option<u64>,
    /// Explicit acks (null for auto): messages acknowledged.
    acked: Option<u64>,
    /// Explicit acks (null for auto): nacks.
    nacked: Option<u64>,
    /// Explicit acks (null for auto): messages held past the ack wait.
    expired: Option<u64>,
    /// Explicit acks (null for auto): messages moved to the dead-letter queue.
    dead_lettered: Option<u64>,
    /// Explicit acks: when the oldest message in flight was first handed out, ns since the
    /// Unix epoch; null when none is in flight (or for auto).
    oldest_unacked_unix_ns: Option<u64>,
    /// How long ago that was, ns (at the time of listing); null with it.
    oldest_unacked_age_ns: Option<u64>,
    /// Explicit acks: the name of its dead-letter queue (`shmq dlq`); null for auto.
    dlq: Option<String>,
    /// Totals over its members, past and present.
    received: Counters,
    members: Vec<MemberJson>,
}

/// Nanoseconds since the Unix epoch now (0 if the clock is before it).
fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Whether the subscription acknowledges explicitly (`Ack` may gain modes: any other is
/// shown as auto, which has none of the explicit counters).
fn explicit(s: &SubscriptionInfo) -> bool {
    s.ack == Ack::Explicit
}

impl SubscriptionJson {
    /// Subscription `s` of queue `queue`.
    pub fn new(queue: &str, s: &SubscriptionInfo) -> SubscriptionJson {
        let x = explicit(s);
        let only = |v: u64| x.then_some(v);
        let oldest = s.oldest_unacked_unix_ns.filter(|_| x);
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
            ack: if x { "explicit" } else { "auto" },
            in_flight: only(s.in_flight),
            acked: only(s.acked),
            nacked: only(s.nacked),
            expired: only(s.expired),
            dead_lettered: only(s.dead_lettered),
            oldest_unacked_unix_ns: oldest,
            oldest_unacked_age_ns: oldest.map(|t| now_unix_ns().saturating_sub(t)),
            dlq: x.then(|| shmq::dlq_name(queue, &s.name)),
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

/// `shmq subs create QUEUE NAME`. Options that need `--ack explicit` without it, and
/// `--lag-limit` with it, are usage errors (status 2).
pub fn create(queue: &str, name: &str, lag_limit: Option<u64>, from: shmq::From, acks: AckOptions) -> Result<()> {
    let explicit = acks.ack == AckArg::Explicit;
    if !explicit {
        let given: Vec<&str> = [
            ("--ack-wait", acks.ack_wait.is_some()),
            ("--max-in-flight", acks.max_in_flight.is_some()),
            ("--max-deliveries", acks.max_deliveries.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !given.is_empty() {
            crate::usage_error(format!("{} only apply with '--ack explicit'", given.join(", ")));
        }
    }
    if explicit && lag_limit.is_some() {
        crate::usage_error(
            "'--lag-limit' cannot be used with '--ack explicit': a subscription with explicit acks misses nothing",
        );
    }
    let mut options = SubscriptionOptions::new().start(from).lag_limit(lag_limit).ack(acks.ack.into());
    if let Some(w) = acks.ack_wait {
        if w < Duration::from_millis(1) || w > Duration::from_secs(7 * 86_400) {
            crate::usage_error(format!("invalid value '{w:?}' for '--ack-wait <DUR>': from 1ms to 7 days"));
        }
        options = options.ack_wait(w);
    }
    if let Some(n) = acks.max_in_flight {
        options = options.max_in_flight(n);
    }
    if let Some(n) = acks.max_deliveries {
        options = options.max_deliveries(n);
    }
    // Only for the message: whether this call made it or found it made.
    let existed = Subscription::list(queue).is_ok_and(|l| l.iter().any(|s| s.name == name));
    Subscription::create(queue, name, options).map_err(|e| explain(queue, name, "create", e))?;
    let what = if existed { "exists already with these options" } else { "created" };
    if explicit {
        println!(
            "subscription {name:?} of queue {queue:?} {what}: explicit acks, ack wait {:?}, max in flight {}, \
             max deliveries {}; dead letters go to queue {:?}",
            options.get_ack_wait(),
            options.get_max_in_flight(),
            options.get_max_deliveries(),
            shmq::dlq_name(queue, name)
        );
    } else {
        println!("subscription {name:?} of queue {queue:?} {what}: lag limit {}", lag_limit_text(lag_limit));
    }
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
            subscriptions: subs.iter().map(|s| SubscriptionJson::new(queue, s)).collect(),
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
    let now = now_unix_ns();
    println!(
        "{indent}{:<w$} {:>9} {:>14} {:>10} {:>8} {:<8} {:>6} {:>10} {:>11} {:>10} {:<8} {:>9} {:>13} {:>14}",
        "name",
        "lag limit",
        "position",
        "lag",
        "~msgs",
        "state",
        "lapped",
        "missed",
        "redelivered",
        "received",
        "ack",
        "in flight",
        "dead-lettered",
        "oldest unacked"
    );
    for s in subs {
        // Explicit acks only: "-" for auto subscriptions (and no message in flight).
        let x = explicit(s);
        let only = |v: u64| if x { v.to_string() } else { "-".to_owned() };
        let oldest = match s.oldest_unacked_unix_ns.filter(|_| x) {
            Some(t) => format_age(Duration::from_nanos(now.saturating_sub(t))),
            None => "-".to_owned(),
        };
        println!(
            "{indent}{:<w$} {:>9} {:>14} {:>10} {:>8} {:<8} {:>6} {:>10} {:>11} {:>10} {:<8} {:>9} {:>13} {:>14}",
            s.name,
            lag_limit_text(s.lag_limit),
            s.position,
            format_size(s.lag_bytes),
            s.lag_messages,
            if s.detached { "detached" } else { "ok" },
            s.lapped,
            format_size(s.missed_bytes),
            s.redelivered,
            s.received.messages,
            if x { "explicit" } else { "auto" },
            only(s.in_flight),
            only(s.dead_lettered),
            oldest
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
