//! `shmq stat` and `shmq ls`: what is in a queue, who is attached, what the counters say;
//! `stat` also lists the subscriptions.
//!
//! Both print JSON with `--json` (schema version [`super::SCHEMA_VERSION`]); the structs
//! below are that schema.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use shmq::{CounterValues, Error, Queue, Snapshot};

use crate::args::format_size;

/// Counters of one direction (or one participant).
#[derive(Serialize, Clone, Copy)]
pub struct Counters {
    messages: u64,
    bytes: u64,
    full_events: u64,
    wake_calls: u64,
    wait_calls: u64,
}

impl From<CounterValues> for Counters {
    fn from(c: CounterValues) -> Counters {
        Counters {
            messages: c.messages,
            bytes: c.bytes,
            full_events: c.full_events,
            wake_calls: c.wake_calls,
            wait_calls: c.wait_calls,
        }
    }
}

/// One participant of `stat --json`.
#[derive(Serialize)]
pub struct ParticipantJson {
    slot: usize,
    role: &'static str,
    pid: u32,
    /// Whether the kernel says it lives (its slot lock is held).
    alive: bool,
    /// Process start time in clock ticks after boot (with `pid`, identifies the process).
    start_time: u64,
    heartbeat_unix_ns: u64,
    counters: Counters,
    /// `alive`, `stuck` (held messages without taking any for the threshold; only with
    /// `--stuck-after`) or `dead` (its process ended; a stopped process is not dead).
    state: &'static str,
    /// Consumers and members watched with `--stuck-after`: how long they have held messages
    /// without taking any; null when not judged (one look cannot tell, producers are not judged).
    stalled_s: Option<f64>,
}

/// Seconds stalled, if the participant was judged.
pub fn stalled_s(p: shmq::Progress) -> Option<f64> {
    (p != shmq::Progress::Unknown).then(|| p.stalled_for().as_secs_f64())
}

/// Rates over `--interval`.
#[derive(Serialize)]
pub struct Rates {
    interval_s: f64,
    sent_msgs_per_s: f64,
    sent_bytes_per_s: f64,
    received_msgs_per_s: f64,
    received_bytes_per_s: f64,
}

/// `stat --json`.
#[derive(Serialize)]
pub struct StatJson {
    schema_version: u32,
    name: String,
    mode: String,
    capacity: u64,
    max_message: u32,
    /// Octal, e.g. "0600".
    permissions: String,
    creator_pid: u32,
    created_unix_ns: u64,
    closed: bool,
    /// Messages sent and not yet received.
    messages: u64,
    /// Bytes between the positions (headers and padding included).
    used_bytes: u64,
    percent_full: f64,
    sent: Counters,
    received: Counters,
    /// MPSC: claims of producers that died before committing, passed by the consumer.
    reclaimed_claims: u64,
    participants: Vec<ParticipantJson>,
    /// The default subscription first (if it was not removed).
    subscriptions: Vec<super::subs::SubscriptionJson>,
    /// Present with `--interval`.
    rates: Option<Rates>,
    /// A durable queue's log; null for a volatile queue.
    durable: Option<super::durable::DurableJson>,
    /// With `--stuck-after`: the threshold in seconds (null: stuck not judged).
    stuck_after_s: Option<f64>,
}

/// How `stat` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// JSON (stable, with schema_version).
    Json,
    /// Prometheus text exposition format 0.0.4.
    Prometheus,
}

use super::monitor::{Collector, percent, role, state};

fn inspect(name: &str) -> Result<Snapshot> {
    Queue::inspect(name).with_context(|| format!("inspect queue {name:?}"))
}

/// `shmq stat NAME`: one look; with `--interval` or `--stuck-after`, looks over that long
/// (the longer of the two) and shows the last look, with rates (`--interval`) and stuck
/// consumers (`--stuck-after`: those that held messages without taking any the whole time).
pub fn stat(name: &str, format: Format, interval: Option<Duration>, stuck_after: Option<Duration>) -> Result<()> {
    let interval = interval.filter(|d| !d.is_zero());
    let window = interval.unwrap_or_default().max(stuck_after.unwrap_or_default());
    if window.is_zero() {
        return print_stat(&inspect(name)?, None, None, format);
    }
    let mut c = Collector::new(stuck_after.unwrap_or(Duration::MAX));
    let names = [name.to_owned()];
    let look = |c: &mut Collector| -> Result<Snapshot> {
        let (mut snaps, mut errors) = c.look(&names);
        match (snaps.pop(), errors.pop()) {
            (Some(s), _) => Ok(s),
            (None, Some((_, e))) => Err(anyhow::Error::new(e).context(format!("inspect queue {name:?}"))),
            (None, None) => inspect(name),
        }
    };
    let first = look(&mut c)?;
    // After the first look (whose own clock reading is earlier): the last look is then at
    // least `window` after it, so a participant stalled all along reaches the threshold.
    let t0 = Instant::now();
    // Often enough to see a participant move, rarely enough to cost nothing.
    let step = (window / 20).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        let left = window.saturating_sub(t0.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(step.min(left));
        if t0.elapsed() < window {
            look(&mut c)?;
        }
    }
    let last = look(&mut c)?;
    let secs = t0.elapsed().as_secs_f64();
    let rates = interval.map(|_| {
        let r = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        Rates {
            interval_s: secs,
            sent_msgs_per_s: r(first.sent.messages, last.sent.messages),
            sent_bytes_per_s: r(first.sent.bytes, last.sent.bytes),
            received_msgs_per_s: r(first.received.messages, last.received.messages),
            received_bytes_per_s: r(first.received.bytes, last.received.bytes),
        }
    });
    print_stat(&last, rates, stuck_after, format)
}

fn print_stat(s: &Snapshot, rates: Option<Rates>, stuck_after: Option<Duration>, format: Format) -> Result<()> {
    let c = &s.config;
    if format == Format::Prometheus {
        print!("{}", super::prometheus::render(std::slice::from_ref(s)));
        return Ok(());
    }
    if format == Format::Json {
        let j = StatJson {
            schema_version: super::SCHEMA_VERSION,
            name: c.name.clone(),
            mode: c.mode.to_string(),
            capacity: c.capacity,
            max_message: c.max_message,
            permissions: format!("{:04o}", c.permissions),
            creator_pid: c.creator_pid,
            created_unix_ns: c.created_unix_ns,
            closed: s.closed,
            messages: s.messages,
            used_bytes: s.used_bytes,
            percent_full: percent(s.used_bytes, c.capacity),
            sent: s.sent.into(),
            received: s.received.into(),
            reclaimed_claims: s.reclaimed_claims,
            participants: s
                .participants
                .iter()
                .map(|p| ParticipantJson {
                    slot: p.slot,
                    role: role(p.role),
                    pid: p.pid,
                    alive: p.alive,
                    start_time: p.start_time,
                    heartbeat_unix_ns: p.heartbeat_unix_ns,
                    counters: p.counters.into(),
                    state: state(p.alive, p.progress),
                    stalled_s: stalled_s(p.progress),
                })
                .collect(),
            subscriptions: s.subscriptions.iter().map(|sub| super::subs::SubscriptionJson::new(&c.name, sub)).collect(),
            rates,
            durable: super::durable::json(s),
            stuck_after_s: stuck_after.map(|d| d.as_secs_f64()),
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let ago = |t: u64| -> String {
        if t == 0 { "never".into() } else { format!("{:.1}s ago", now_ns.saturating_sub(t) as f64 / 1e9) }
    };
    let counters = |v: &CounterValues| {
        format!(
            "{} messages, {}; {} full events, {} wake calls, {} wait calls",
            v.messages,
            format_size(v.bytes),
            v.full_events,
            v.wake_calls,
            v.wait_calls
        )
    };
    println!("queue        {}{}", c.name, if s.closed { "  (removed: closed, draining)" } else { "" });
    println!("mode         {}, permissions {:04o}", c.mode, c.permissions);
    println!("created      by pid {}, {}", c.creator_pid, ago(c.created_unix_ns));
    println!("capacity     {}, max message {}", format_size(c.capacity), format_size(u64::from(c.max_message)));
    println!(
        "depth        {} messages, {} used ({:.2}% full)",
        s.messages,
        format_size(s.used_bytes),
        percent(s.used_bytes, c.capacity)
    );
    println!("sent         {}", counters(&s.sent));
    println!("received     {}", counters(&s.received));
    if s.reclaimed_claims > 0 {
        println!("reclaimed    {} claims of producers that died before committing", s.reclaimed_claims);
    }
    super::durable::print(s);
    for b in super::prometheus::bridges(&s.config.name) {
        println!(
            "bridge {}: forwarded {} redelivered {} duplicates {} errors {} {}",
            b.direction,
            b.forwarded,
            b.redelivered,
            b.duplicates,
            b.errors,
            if b.connected { "connected" } else { "disconnected" }
        );
    }
    if let Some(r) = &rates {
        println!(
            "rates        sent {:.0} msg/s ({:.3} MB/s), received {:.0} msg/s ({:.3} MB/s) over {:.2}s",
            r.sent_msgs_per_s,
            r.sent_bytes_per_s / 1e6,
            r.received_msgs_per_s,
            r.received_bytes_per_s / 1e6,
            r.interval_s
        );
    }
    if s.participants.is_empty() {
        println!("participants none");
    } else {
        match stuck_after {
            Some(d) => {
                println!("participants (stuck: held messages without taking any for {:?}; dead: process ended)", d)
            }
            None => println!("participants (dead: process ended; add --stuck-after 5s to watch for stuck ones)"),
        }
        println!(
            "  {:<4} {:<9} {:>8} {:<6} {:>10} {:>12}  heartbeat",
            "slot", "role", "pid", "state", "messages", "bytes"
        );
        for p in &s.participants {
            let stalled = match p.progress.stalled_for() {
                d if d.is_zero() => String::new(),
                d => format!(", holding messages without progress for {:.1}s", d.as_secs_f64()),
            };
            println!(
                "  {:<4} {:<9} {:>8} {:<6} {:>10} {:>12}  {}{stalled}",
                p.slot,
                role(p.role),
                p.pid,
                state(p.alive, p.progress),
                p.counters.messages,
                format_size(p.counters.bytes),
                ago(p.heartbeat_unix_ns)
            );
        }
    }
    println!("subscriptions");
    super::subs::print_table(&s.subscriptions, "  ");
    Ok(())
}

/// One queue of `ls --json`.
#[derive(Serialize)]
pub struct LsEntry {
    name: String,
    mode: Option<String>,
    capacity: Option<u64>,
    max_message: Option<u32>,
    messages: Option<u64>,
    used_bytes: Option<u64>,
    percent_full: Option<f64>,
    participants: usize,
    alive_participants: usize,
    /// It has participants and every one of them is dead: a crash left it behind.
    orphaned: bool,
    closed: bool,
    /// Why it could not be inspected (permission, corrupt, ...); the other fields are null.
    error: Option<String>,
}

/// `ls --json`.
#[derive(Serialize)]
pub struct LsJson {
    schema_version: u32,
    queues: Vec<LsEntry>,
}

/// `shmq ls`.
pub fn ls(json: bool) -> Result<()> {
    let mut queues = Vec::new();
    for name in Queue::list().context("list queues")? {
        let e = match Queue::inspect(&name) {
            Ok(s) => {
                let alive = s.participants.iter().filter(|p| p.alive).count();
                LsEntry {
                    mode: Some(s.config.mode.to_string()),
                    capacity: Some(s.config.capacity),
                    max_message: Some(s.config.max_message),
                    messages: Some(s.messages),
                    used_bytes: Some(s.used_bytes),
                    percent_full: Some(percent(s.used_bytes, s.config.capacity)),
                    participants: s.participants.len(),
                    alive_participants: alive,
                    orphaned: !s.participants.is_empty() && alive == 0,
                    closed: s.closed,
                    error: None,
                    name,
                }
            }
            // Removed between the listing and now.
            Err(Error::NotFound(_)) => continue,
            Err(e) => LsEntry {
                name,
                mode: None,
                capacity: None,
                max_message: None,
                messages: None,
                used_bytes: None,
                percent_full: None,
                participants: 0,
                alive_participants: 0,
                orphaned: false,
                closed: false,
                error: Some(e.to_string()),
            },
        };
        queues.push(e);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&LsJson { schema_version: super::SCHEMA_VERSION, queues })?);
        return Ok(());
    }
    if queues.is_empty() {
        println!("no queues");
        return Ok(());
    }
    println!(
        "{:<24} {:<5} {:>9} {:>9} {:>6} {:>12}  status",
        "name", "mode", "capacity", "messages", "full", "participants"
    );
    for q in &queues {
        if let Some(err) = &q.error {
            println!("{:<24} {}", q.name, err);
            continue;
        }
        let status = match (q.orphaned, q.closed) {
            (true, _) => "ORPHANED: every participant is dead (shmq rm to clean up)",
            (false, true) => "closed",
            _ => "",
        };
        println!(
            "{:<24} {:<5} {:>9} {:>9} {:>5.1}% {:>12}  {}",
            q.name,
            q.mode.as_deref().unwrap_or("-"),
            format_size(q.capacity.unwrap_or(0)),
            q.messages.unwrap_or(0),
            q.percent_full.unwrap_or(0.0),
            format!("{}/{} alive", q.alive_participants, q.participants),
            status
        );
    }
    Ok(())
}
