//! What `shmq top`, `shmq exporter` and `shmq stat` share: reading queues over time
//! ([`Collector`]: snapshots, stuck judgement, counters that never go backwards), the
//! participants' states, and rates between two snapshots.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shmq::{CounterValues, Error, Participant, Progress, Queue, Role, Snapshot, Watch};

/// A participant's state as every command shows it: `dead` (its process ended: the kernel
/// dropped its slot lock), `stuck` (it has held messages without taking any for the
/// threshold), or `alive`. A stopped process is never dead.
pub fn state(alive: bool, progress: Progress) -> &'static str {
    if !alive {
        "dead"
    } else if progress.is_stuck() {
        "stuck"
    } else {
        "alive"
    }
}

/// `producer` or `consumer` (subscription members are consumers).
pub fn role(r: Role) -> &'static str {
    match r {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    }
}

/// The subscription each consumer-like slot reads, by slot.
pub fn subscription_of(s: &Snapshot) -> HashMap<usize, &str> {
    s.subscriptions.iter().flat_map(|sub| sub.members.iter().map(move |m| (m.slot, sub.name.as_str()))).collect()
}

/// How many participants of `role` are alive, stuck and dead (alive excludes stuck).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Census {
    pub alive: usize,
    pub stuck: usize,
    pub dead: usize,
}

/// Counts the participants of `role` by state.
pub fn census(s: &Snapshot, role: Role) -> Census {
    let mut c = Census::default();
    for p in s.participants.iter().filter(|p| p.role == role) {
        match state(p.alive, p.progress) {
            "dead" => c.dead += 1,
            "stuck" => c.stuck += 1,
            _ => c.alive += 1,
        }
    }
    c
}

/// Percent of the capacity in use, two decimals.
pub fn percent(used: u64, capacity: u64) -> f64 {
    if capacity == 0 { 0.0 } else { (used as f64 * 10000.0 / capacity as f64).round() / 100.0 }
}

/// Reads queues again and again: each look is `Queue::inspect` (read-only, never a
/// participant), judged by a [`Watch`] for stuck consumers, its counters kept from going
/// backwards.
///
/// Why the counters need that: a participant that leaves moves its counts into the queue's
/// totals in two steps (its slot's counter is zeroed, then the totals grow), and a look
/// between the two sees the counts in neither. A queue's totals are therefore clamped to the
/// highest value read before for the same queue (the same name and creation time); the value
/// shown is then one the counter really had, at most a look late.
pub struct Collector {
    watch: Watch,
    /// Per queue name: its creation time and the highest value of each total read.
    highs: HashMap<String, (u64, HashMap<String, u64>)>,
}

impl Collector {
    /// A collector flagging consumers stuck after `stuck_after` without progress.
    pub fn new(stuck_after: Duration) -> Collector {
        Collector { watch: Watch::new(stuck_after), highs: HashMap::new() }
    }

    /// The queues to look at: `names`, or every queue on the host when it is empty.
    pub fn names(names: &[String]) -> shmq::Result<Vec<String>> {
        if names.is_empty() { Queue::list() } else { Ok(names.to_vec()) }
    }

    /// Looks at each of `names` once. A queue that vanished since it was listed is left out
    /// (and forgotten); other errors are returned with the queue's name.
    pub fn look(&mut self, names: &[String]) -> (Vec<Snapshot>, Vec<(String, Error)>) {
        let mut snaps = Vec::new();
        let mut errors = Vec::new();
        for name in names {
            match self.watch.inspect(name) {
                Ok(mut s) => {
                    self.clamp(&mut s);
                    snaps.push(s);
                }
                Err(Error::NotFound(_)) => {
                    self.highs.remove(name);
                }
                Err(e) => errors.push((name.clone(), e)),
            }
        }
        (snaps, errors)
    }

    /// Forgets every queue not in `names` (removed from the host).
    pub fn retain(&mut self, names: &[String]) {
        self.watch.retain(|n| names.iter().any(|x| x == n));
        self.highs.retain(|n, _| names.iter().any(|x| x == n));
    }

    fn clamp(&mut self, s: &mut Snapshot) {
        let created = s.config.created_unix_ns;
        let entry = self.highs.entry(s.config.name.clone()).or_insert_with(|| (created, HashMap::new()));
        if entry.0 != created {
            *entry = (created, HashMap::new());
        }
        let highs = &mut entry.1;
        let mut keep = |key: String, v: &mut u64| {
            let h = highs.entry(key).or_insert(0);
            *h = (*h).max(*v);
            *v = *h;
        };
        let mut counters = |prefix: &str, c: &mut CounterValues| {
            keep(format!("{prefix}.messages"), &mut c.messages);
            keep(format!("{prefix}.bytes"), &mut c.bytes);
            keep(format!("{prefix}.full_events"), &mut c.full_events);
            keep(format!("{prefix}.wake_calls"), &mut c.wake_calls);
            keep(format!("{prefix}.wait_calls"), &mut c.wait_calls);
        };
        counters("sent", &mut s.sent);
        counters("received", &mut s.received);
        // A subscription made again under the same name is another one: keyed by its
        // creation time too.
        for sub in &mut s.subscriptions {
            counters(&format!("sub.{}.{}.received", sub.name, sub.created_unix_ns), &mut sub.received);
        }
        keep("reclaimed".into(), &mut s.reclaimed_claims);
        for sub in &mut s.subscriptions {
            let id = format!("sub.{}.{}", sub.name, sub.created_unix_ns);
            keep(format!("{id}.lapped"), &mut sub.lapped);
            keep(format!("{id}.missed"), &mut sub.missed_bytes);
            keep(format!("{id}.redelivered"), &mut sub.redelivered);
        }
        // The depth follows the clamped totals (it is sent less received).
        s.messages = s.sent.messages.saturating_sub(s.received.messages);
    }
}

/// Per-second rates of a queue between two snapshots of it.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rates {
    pub sent_msgs_per_s: f64,
    pub sent_bytes_per_s: f64,
    pub received_msgs_per_s: f64,
    pub received_bytes_per_s: f64,
    /// Calls that found the queue full.
    pub full_events_per_s: f64,
    /// `FUTEX_WAIT` calls (sleeps), producers and consumers.
    pub wait_calls_per_s: f64,
    /// `FUTEX_WAKE` calls, producers and consumers.
    pub wake_calls_per_s: f64,
}

impl Rates {
    /// Rates from `a` to `b`, `secs` apart (zero when the queue was made anew meanwhile).
    pub fn between(a: &Snapshot, b: &Snapshot, secs: f64) -> Rates {
        if secs <= 0.0 || a.config.created_unix_ns != b.config.created_unix_ns {
            return Rates::default();
        }
        let r = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
        let both = |f: fn(&CounterValues) -> u64| {
            r(f(&a.sent).saturating_add(f(&a.received)), f(&b.sent).saturating_add(f(&b.received)))
        };
        Rates {
            sent_msgs_per_s: r(a.sent.messages, b.sent.messages),
            sent_bytes_per_s: r(a.sent.bytes, b.sent.bytes),
            received_msgs_per_s: r(a.received.messages, b.received.messages),
            received_bytes_per_s: r(a.received.bytes, b.received.bytes),
            full_events_per_s: both(|c| c.full_events),
            wait_calls_per_s: both(|c| c.wait_calls),
            wake_calls_per_s: both(|c| c.wake_calls),
        }
    }
}

/// A snapshot and when it was read, for rates.
pub struct Timed {
    pub snap: Snapshot,
    pub at: Instant,
}

/// The largest lag of the queue's subscriptions, in bytes.
/// A durable queue's log size on disk: the bytes of its segment files (`None` for a volatile
/// queue, or a directory that cannot be read).
pub fn log_bytes(s: &Snapshot) -> Option<u64> {
    let d = s.config.durable.as_ref()?;
    let dir = std::fs::read_dir(&d.dir).ok()?;
    Some(
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".seg")))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum(),
    )
}

/// A durable queue's bytes sent (claimed) and not yet synced (`None` for a volatile queue).
pub fn durable_lag(s: &Snapshot) -> Option<u64> {
    s.durable.map(|d| s.tail.saturating_sub(d.durable))
}

pub fn max_lag(s: &Snapshot) -> u64 {
    s.subscriptions.iter().map(|x| x.lag_bytes).max().unwrap_or(0)
}

/// A participant's label for its subscription: members and the default consumer read one.
pub fn participant_subscription<'a>(subs: &HashMap<usize, &'a str>, p: &Participant) -> Option<&'a str> {
    match p.role {
        Role::Consumer => subs.get(&p.slot).copied(),
        Role::Producer => None,
    }
}
