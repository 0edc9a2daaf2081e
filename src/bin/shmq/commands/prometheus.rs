//! Prometheus text exposition format 0.0.4 for queue snapshots: `shmq stat --format
//! prometheus` and `shmq exporter`. The metric names are listed in the README's "Monitoring"
//! section; each family has `# HELP` and `# TYPE` and its samples together.

use std::collections::HashMap;
use std::fmt::Write as _;

use shmq::{Progress, Snapshot};

use super::monitor::{self, Census};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counter or gauge.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family being built: its samples, each with its labels.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Every family of one exposition, in the order they are first declared.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
    /// Where each family is in `families`.
    index: HashMap<&'static str, usize>,
}

impl Exposition {
    /// Adds a sample to family `name` (declared on first use).
    pub fn add(&mut self, name: &'static str, kind: Kind, help: &'static str, labels: &[(&'static str, &str)], v: f64) {
        let families = &mut self.families;
        let i = *self.index.entry(name).or_insert_with(|| {
            families.push(Family { name, help, kind, samples: Vec::new() });
            families.len() - 1
        });
        self.families[i].samples.push((labels.iter().map(|&(k, v)| (k, v.to_owned())).collect(), v));
    }

    /// The text: each family's `# HELP`, `# TYPE` and samples.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, v) in &f.samples {
                out.push_str(f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(val));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*v));
            }
        }
        out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn secs(unix_ns: u64) -> f64 {
    unix_ns as f64 / 1e9
}

/// Adds every metric of queue snapshot `s`.
pub fn add_queue(e: &mut Exposition, s: &Snapshot) {
    use Kind::{Counter, Gauge};
    let c = &s.config;
    let q = c.name.as_str();
    let ql = [("queue", q)];
    let mode = c.mode.to_string();
    e.add("shmq_queue_info", Gauge, "Queue configuration, in labels; always 1.", &[("queue", q), ("mode", &mode)], 1.0);
    e.add("shmq_queue_capacity_bytes", Gauge, "Bytes in the queue's ring.", &ql, c.capacity as f64);
    e.add("shmq_queue_max_message_bytes", Gauge, "Largest message the queue takes.", &ql, f64::from(c.max_message));
    e.add(
        "shmq_queue_created_timestamp_seconds",
        Gauge,
        "When the queue was created, seconds since the Unix epoch.",
        &ql,
        secs(c.created_unix_ns),
    );
    e.add(
        "shmq_queue_messages",
        Gauge,
        "Messages sent and not yet received by the default subscription (the depth).",
        &ql,
        s.messages as f64,
    );
    e.add(
        "shmq_queue_used_bytes",
        Gauge,
        "Bytes between the producers' and the consumer's positions (record headers and padding included).",
        &ql,
        s.used_bytes as f64,
    );
    e.add(
        "shmq_queue_fill_ratio",
        Gauge,
        "Used bytes over capacity, 0 to 1.",
        &ql,
        if c.capacity == 0 { 0.0 } else { s.used_bytes as f64 / c.capacity as f64 },
    );
    e.add(
        "shmq_queue_closed",
        Gauge,
        "1 if the queue was removed between the listing and the look (a removed queue leaves the next listing).",
        &ql,
        f64::from(u8::from(s.closed)),
    );
    for b in bridges(q) {
        let l = [("queue", q), ("direction", b.direction.as_str())];
        let help = "NATS bridge (shmq-bridge): messages forwarded (released after JetStream's ack, or acked to JetStream after the send).";
        e.add("shmq_bridge_forwarded_messages_total", Counter, help, &l, b.forwarded as f64);
        let help = "NATS bridge: messages delivered again by JetStream.";
        e.add("shmq_bridge_redelivered_messages_total", Counter, help, &l, b.redelivered as f64);
        let help = "NATS bridge: duplicates recognised and not forwarded again.";
        e.add("shmq_bridge_duplicates_total", Counter, help, &l, b.duplicates as f64);
        e.add("shmq_bridge_errors_total", Counter, "NATS bridge: errors (publish, ack, send).", &l, b.errors as f64);
        let help = "NATS bridge: 1 while connected to the NATS server.";
        e.add("shmq_bridge_connected", Gauge, help, &l, f64::from(u8::from(b.connected)));
        let help = "NATS bridge: when its counters were last written, seconds since the Unix epoch.";
        e.add("shmq_bridge_updated_timestamp_seconds", Gauge, help, &l, b.updated_unix_ms as f64 / 1000.0);
    }
    if let Some(d) = &s.durable {
        e.add(
            "shmq_log_written_position_bytes",
            Gauge,
            "Durable queue: stream position written to the log files.",
            &ql,
            d.written as f64,
        );
        e.add(
            "shmq_log_durable_position_bytes",
            Gauge,
            "Durable queue: stream position synced to disk.",
            &ql,
            d.durable as f64,
        );
        e.add(
            "shmq_log_durable_lag_bytes",
            Gauge,
            "Durable queue: bytes sent (claimed) and not yet synced to disk.",
            &ql,
            s.tail.saturating_sub(d.durable) as f64,
        );
        if let Some(bytes) = super::monitor::log_bytes(s) {
            e.add("shmq_log_bytes", Gauge, "Durable queue: size of its log segment files on disk.", &ql, bytes as f64);
        }
        e.add("shmq_log_syncs_total", Counter, "Durable queue: fdatasync calls made on the log.", &ql, d.syncs as f64);
        e.add(
            "shmq_log_writes_total",
            Counter,
            "Durable queue: journal writes to the log files.",
            &ql,
            d.writes as f64,
        );
        e.add(
            "shmq_log_failed",
            Gauge,
            "Durable queue: 1 once a sync failed (the queue is read-only).",
            &ql,
            f64::from(u8::from(d.failed)),
        );
    }
    for (role, v) in [("producer", &s.sent), ("consumer", &s.received)] {
        let l = [("queue", q), ("role", role)];
        e.add(
            "shmq_messages_total",
            Counter,
            "Messages sent (role producer) or received by the default subscription (role consumer).",
            &l,
            v.messages as f64,
        );
        e.add("shmq_bytes_total", Counter, "Payload bytes sent or received.", &l, v.bytes as f64);
        e.add("shmq_full_events_total", Counter, "Calls that found the queue full.", &l, v.full_events as f64);
        e.add("shmq_wake_calls_total", Counter, "FUTEX_WAKE calls made.", &l, v.wake_calls as f64);
        e.add("shmq_wait_calls_total", Counter, "FUTEX_WAIT calls made (sleeps).", &l, v.wait_calls as f64);
    }
    e.add(
        "shmq_reclaimed_claims_total",
        Counter,
        "MPSC claims of producers that died before committing, passed by the consumer.",
        &ql,
        s.reclaimed_claims as f64,
    );
    for (role, census) in
        [("producer", monitor::census(s, shmq::Role::Producer)), ("consumer", monitor::census(s, shmq::Role::Consumer))]
    {
        let Census { alive, stuck, dead } = census;
        for (state, n) in [("alive", alive), ("stuck", stuck), ("dead", dead)] {
            e.add(
                "shmq_participants",
                Gauge,
                "Registered participants by state: alive (and not stuck), stuck (holding messages without progress), dead (process ended).",
                &[("queue", q), ("role", role), ("state", state)],
                n as f64,
            );
        }
    }
    let subs = monitor::subscription_of(s);
    for p in &s.participants {
        let slot = p.slot.to_string();
        let pid = p.pid.to_string();
        let role = monitor::role(p.role);
        let mut l = vec![("queue", q), ("role", role), ("slot", slot.as_str()), ("pid", pid.as_str())];
        if let Some(sub) = monitor::participant_subscription(&subs, p) {
            l.push(("subscription", sub));
        }
        e.add(
            "shmq_participant_alive",
            Gauge,
            "1 while the participant's process lives (a stopped process lives), 0 once it died.",
            &l,
            f64::from(u8::from(p.alive)),
        );
        // Only judged participants: a single look cannot tell stuck from busy.
        if p.progress != Progress::Unknown {
            e.add(
                "shmq_participant_stuck",
                Gauge,
                "1 if the consumer or member has held messages without taking any for the stuck threshold.",
                &l,
                f64::from(u8::from(p.progress.is_stuck())),
            );
            e.add(
                "shmq_participant_stalled_seconds",
                Gauge,
                "How long the consumer or member has held messages without taking any.",
                &l,
                p.progress.stalled_for().as_secs_f64(),
            );
        }
        e.add(
            "shmq_participant_heartbeat_timestamp_seconds",
            Gauge,
            "The participant's last heartbeat (it waited, or passed a multiple of 4096 messages), seconds since the Unix epoch.",
            &l,
            secs(p.heartbeat_unix_ns),
        );
        // No per-participant counters: a process that leaves and registers again gets the
        // same slot, pid and labels, and its count starts from zero (a counter going back
        // within one series). The queue's and subscriptions' totals carry the rates.
    }
    for sub in &s.subscriptions {
        let l = [("queue", q), ("subscription", sub.name.as_str())];
        e.add(
            "shmq_subscription_lag_bytes",
            Gauge,
            "Bytes the subscription is behind the producers (record headers and padding included).",
            &l,
            sub.lag_bytes as f64,
        );
        e.add(
            "shmq_subscription_lag_messages",
            Gauge,
            "About how many messages the subscription is behind (from the average record size).",
            &l,
            sub.lag_messages as f64,
        );
        e.add(
            "shmq_subscription_position",
            Gauge,
            "Stream position of the next message the subscription hands out.",
            &l,
            sub.position as f64,
        );
        if let Some(limit) = sub.lag_limit {
            e.add(
                "shmq_subscription_lag_limit_bytes",
                Gauge,
                "The subscription's lag limit (absent: none, producers wait for it).",
                &l,
                limit as f64,
            );
        }
        e.add(
            "shmq_subscription_detached",
            Gauge,
            "1 while the subscription is lapped and not yet rejoined.",
            &l,
            f64::from(u8::from(sub.detached)),
        );
        e.add(
            "shmq_subscription_lapped_total",
            Counter,
            "Times the subscription was detached for falling behind its lag limit.",
            &l,
            sub.lapped as f64,
        );
        e.add(
            "shmq_subscription_missed_bytes_total",
            Counter,
            "Bytes the subscription missed while lapped.",
            &l,
            sub.missed_bytes as f64,
        );
        e.add(
            "shmq_subscription_redelivered_messages_total",
            Counter,
            "Messages handed out again: their member died, or (explicit acks) they were nacked or held past ack_wait.",
            &l,
            sub.redelivered as f64,
        );
        e.add(
            "shmq_subscription_received_messages_total",
            Counter,
            "Messages the subscription's members received, past and present.",
            &l,
            sub.received.messages as f64,
        );
        e.add(
            "shmq_subscription_received_bytes_total",
            Counter,
            "Payload bytes the subscription's members received, past and present.",
            &l,
            sub.received.bytes as f64,
        );
        let mut census = Census::default();
        for m in &sub.members {
            match monitor::state(m.alive, m.progress) {
                "dead" => census.dead += 1,
                "stuck" => census.stuck += 1,
                _ => census.alive += 1,
            }
        }
        for (state, n) in [("alive", census.alive), ("stuck", census.stuck), ("dead", census.dead)] {
            e.add(
                "shmq_subscription_members",
                Gauge,
                "The subscription's members by state (alive, stuck, dead).",
                &[("queue", q), ("subscription", sub.name.as_str()), ("state", state)],
                n as f64,
            );
        }
        if sub.ack == shmq::Ack::Explicit {
            explicit_acks(e, &l, sub, s.taken_unix_ns);
        }
    }
}

/// The families of a subscription with explicit acks (labels `l`), read at `taken_unix_ns`.
fn explicit_acks(e: &mut Exposition, l: &[(&'static str, &str)], sub: &shmq::SubscriptionInfo, taken_unix_ns: u64) {
    use Kind::*;
    e.add(
        "shmq_subscription_in_flight_messages",
        Gauge,
        "Explicit acks: messages handed out and not yet acknowledged, or waiting to be handed out again.",
        l,
        sub.in_flight as f64,
    );
    for (name, help, n) in [
        ("shmq_subscription_acked_messages_total", "Explicit acks: messages acknowledged.", sub.acked),
        (
            "shmq_subscription_nacked_messages_total",
            "Explicit acks: messages nacked (to be delivered again).",
            sub.nacked,
        ),
        (
            "shmq_subscription_expired_messages_total",
            "Explicit acks: messages held unacknowledged past ack_wait (delivered again).",
            sub.expired,
        ),
        (
            "shmq_subscription_dead_lettered_messages_total",
            "Explicit acks: messages moved to the dead-letter queue (rejected, or delivered max_deliveries times).",
            sub.dead_lettered,
        ),
    ] {
        e.add(name, Counter, help, l, n as f64);
    }
    if let Some(t) = sub.oldest_unacked_unix_ns {
        e.add(
            "shmq_subscription_oldest_unacked_age_seconds",
            Gauge,
            "Explicit acks: how long ago the oldest message in flight was first handed out (absent: none).",
            l,
            taken_unix_ns.saturating_sub(t) as f64 / 1e9,
        );
    }
}

/// The exposition of `snaps`.
pub fn render(snaps: &[Snapshot]) -> String {
    let mut e = Exposition::default();
    for s in snaps {
        add_queue(&mut e, s);
    }
    e.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_their_samples_together_with_help_and_type_first() {
        let mut e = Exposition::default();
        e.add("a_total", Kind::Counter, "A.", &[("queue", "x")], 1.0);
        e.add("b", Kind::Gauge, "B\\n", &[("queue", "x")], 0.5);
        e.add("a_total", Kind::Counter, "A.", &[("queue", "y\"z")], 2.0);
        assert_eq!(
            e.render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{queue=\"x\"} 1\na_total{queue=\"y\\\"z\"} 2\n\
             # HELP b B\\\\n\n# TYPE b gauge\nb{queue=\"x\"} 0.5\n"
        );
    }
}

/// The counters a NATS bridge (`shmq-bridge`) of a queue writes, one per direction.
#[derive(Debug, Default)]
pub struct Bridge {
    /// `to-nats` or `from-nats`.
    pub direction: String,
    /// Messages forwarded.
    pub forwarded: u64,
    /// Messages delivered again by JetStream.
    pub redelivered: u64,
    /// Duplicates recognised.
    pub duplicates: u64,
    /// Errors.
    pub errors: u64,
    /// Connected to the NATS server when last written.
    pub connected: bool,
    /// When last written, milliseconds since the Unix epoch.
    pub updated_unix_ms: u64,
}

/// The bridges of queue `q` that left their counters in `/dev/shm/shmq-bridge.<q>.<direction>.json`
/// (an unreadable or malformed file is skipped: the counters are a view).
pub fn bridges(q: &str) -> Vec<Bridge> {
    let mut out = Vec::new();
    for direction in ["to-nats", "from-nats"] {
        let path = format!("/dev/shm/shmq-bridge.{q}.{direction}.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        out.push(Bridge {
            direction: direction.to_owned(),
            forwarded: n("forwarded"),
            redelivered: n("redelivered"),
            duplicates: n("duplicates"),
            errors: n("errors"),
            connected: v["connected"].as_bool().unwrap_or(false),
            updated_unix_ms: n("updated_unix_ms"),
        });
    }
    out
}
