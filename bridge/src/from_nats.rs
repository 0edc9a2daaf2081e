//! JetStream → shmq.
//!
//! A durable pull consumer on the stream, filtered on the subject, explicit acks. For each
//! message: send its payload to the queue (waiting while the queue is full), and only after
//! the send returned, ack it to JetStream. A bridge killed before the ack leaves the message
//! unacknowledged: JetStream delivers it again (after `--ack-wait`) to the restarted bridge,
//! which resumes the same durable consumer. So nothing is lost, and a message can reach the
//! queue twice: when the bridge is killed between the send and the ack (or its acks were
//! still unsent), the restarted bridge sends those again. A redelivery to the same bridge
//! process of a message it already sent (an ack late or lost in a disconnection) is acked
//! and not sent again (counted in `duplicates`); every redelivery is counted in
//! `redelivered`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::StreamExt;
use shmq::{Error, Producer};

use crate::nats::{self, Js};
use crate::stats::Stats;
use crate::{Args, log};

pub fn run(rt: &tokio::runtime::Runtime, args: &Args, js: Js, stats: &Stats) -> anyhow::Result<()> {
    let queue = args.to_queue.as_deref().expect("clap requires it");
    let subject = args.from_subject.as_deref().expect("clap requires it");
    let mut tx = open(queue)?;
    let stream = rt.block_on(nats::ensure_stream(&js, args, subject))?;
    // Durable names may not hold '.', which queue names may.
    let durable = args.durable.clone().unwrap_or_else(|| format!("shmq-bridge-{}", queue.replace('.', "_")));
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: subject.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: args.ack_wait,
        max_ack_pending: (args.batch * 4).max(1000) as i64,
        ..Default::default()
    };
    let consumer: PullConsumer = retry(stats, "creating or finding the durable consumer", || {
        rt.block_on(stream.get_or_create_consumer(&durable, config.clone())).map_err(anyhow::Error::from)
    });
    // An existing durable consumer keeps its own configuration: it must read our subject.
    let existing = &consumer.cached_info().config;
    if existing.filter_subject != subject || existing.ack_policy != AckPolicy::Explicit {
        bail!(
            "durable consumer {durable} of stream {} exists with filter subject {:?} and ack policy {:?}; \
             this bridge needs {subject:?} and explicit acks (choose another --durable)",
            args.stream,
            existing.filter_subject,
            existing.ack_policy
        );
    }
    log::info(format_args!(
        "forwarding subject {subject} (stream {}, durable consumer {durable}) to queue {queue}",
        args.stream
    ));
    stats.write(js.is_connected());
    let mut last_log = Instant::now();
    let mut last_forwarded = 0;
    let mut recent = Recent::new(RECENT);
    loop {
        let mut messages = retry(stats, "starting to pull messages", || {
            rt.block_on(
                consumer
                    .stream()
                    .max_messages_per_batch(args.batch)
                    .heartbeat(Duration::from_secs(2))
                    .expires(Duration::from_secs(10))
                    .messages(),
            )
            .map_err(anyhow::Error::from)
        });
        loop {
            if stats.maybe_write(js.is_connected()) && !args.quiet && last_log.elapsed() >= Duration::from_secs(10) {
                let f = stats.forwarded.get();
                if f != last_forwarded {
                    log::info(format_args!("{}", stats.summary()));
                    last_forwarded = f;
                }
                last_log = Instant::now();
            }
            let next = match rt.block_on(tokio::time::timeout(Duration::from_secs(1), messages.next())) {
                Err(_elapsed) => continue,
                Ok(n) => n,
            };
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    Stats::add(&stats.errors, 1);
                    log::warn(format_args!("pulling messages: {e}; pulling again"));
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
                None => {
                    log::warn(format_args!("the pull subscription ended; pulling again"));
                    break;
                }
            };
            let (delivered, seq) = m.info().map(|i| (i.delivered, i.stream_sequence)).unwrap_or((1, 0));
            if delivered > 1 {
                Stats::add(&stats.redelivered, 1);
            }
            // Looked up whatever the delivery count says: a server killed before it stored
            // its consumer's state delivers acked messages again as if for the first time.
            if recent.contains(seq) {
                // This process sent it to the queue already (its ack was late, lost, or
                // forgotten by the server): ack it again instead of sending a second copy.
                Stats::add(&stats.duplicates, 1);
                if let Err(e) = rt.block_on(m.ack()) {
                    Stats::add(&stats.errors, 1);
                    log::warn(format_args!("acking a message: {e} (JetStream will deliver it again)"));
                }
                continue;
            }
            deliver(rt, &mut tx, &m, queue, stats)?;
            recent.insert(seq);
            // In the queue: now, and only now, ack it. A lost ack means a redelivery, not a loss.
            if let Err(e) = rt.block_on(m.ack()) {
                Stats::add(&stats.errors, 1);
                log::warn(format_args!("acking a message: {e} (JetStream will deliver it again)"));
            }
            Stats::add(&stats.forwarded, 1);
        }
    }
}

/// Sends one message to the queue, waiting while it is full and telling JetStream every
/// second that the message is still being worked on (so that it is not delivered again
/// meanwhile). Returns once the send returned; fails only when the queue is gone.
fn deliver(
    rt: &tokio::runtime::Runtime,
    tx: &mut Producer,
    m: &async_nats::jetstream::Message,
    queue: &str,
    stats: &Stats,
) -> anyhow::Result<()> {
    let mut full_since: Option<Instant> = None;
    loop {
        match tx.send_timeout(&m.payload, Duration::from_secs(1)) {
            Ok(_) => {
                if let Some(t) = full_since {
                    log::info(format_args!("queue {queue} has room again after {:.1?}", t.elapsed()));
                }
                return Ok(());
            }
            Err(Error::Timeout) => {
                if full_since.is_none() {
                    log::warn(format_args!("queue {queue} is full; waiting (backpressure: nothing is dropped)"));
                    full_since = Some(Instant::now());
                }
                if let Err(e) = rt.block_on(m.ack_with(AckKind::Progress)) {
                    log::warn(format_args!("telling JetStream the message is in progress: {e}"));
                }
                stats.maybe_write(true);
            }
            Err(e @ Error::TooLarge { .. }) => {
                // Never dropped: it waits for someone to make room (a queue with a larger
                // max_message under the same name) or to remove it from the stream.
                Stats::add(&stats.errors, 1);
                log::error(format_args!(
                    "message of {} bytes cannot go to queue {queue}: {e}; retrying in 5 s",
                    m.payload.len()
                ));
                let _ = rt.block_on(m.ack_with(AckKind::Progress));
                std::thread::sleep(Duration::from_secs(5));
            }
            Err(Error::Closed) => bail!("queue {queue} was removed ({}); stopping", stats.summary()),
            Err(e) => return Err(e).with_context(|| format!("sending to queue {queue}")),
        }
    }
}

/// How many stream sequences [`Recent`] remembers: more than JetStream can have pending
/// for the bridge (`max_ack_pending`, at most 4 × --batch) many times over.
const RECENT: usize = 1 << 16;

/// The stream sequences of the last messages this process sent to the queue: a message
/// JetStream delivers again (its ack was late, or lost in a disconnection) that is among them
/// is acked, not sent twice. A bridge started anew remembers nothing: what the previous one
/// sent but had not acked is sent again (at least once).
struct Recent {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Recent {
        Recent { set: Default::default(), order: Default::default(), cap }
    }

    fn contains(&self, seq: u64) -> bool {
        seq != 0 && self.set.contains(&seq)
    }

    fn insert(&mut self, seq: u64) {
        if seq == 0 || !self.set.insert(seq) {
            return;
        }
        self.order.push_back(seq);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

/// Calls `f` until it succeeds, logging and counting each failure, backing off to 1 s.
fn retry<T>(stats: &Stats, what: &str, mut f: impl FnMut() -> anyhow::Result<T>) -> T {
    let mut attempt = 0u64;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => {
                attempt += 1;
                Stats::add(&stats.errors, 1);
                if attempt == 1 || attempt.is_multiple_of(10) {
                    log::warn(format_args!("{what} (attempt {attempt}): {e:#}; retrying"));
                }
                std::thread::sleep(Duration::from_millis((attempt * 100).min(1000)));
                stats.maybe_write(false);
            }
        }
    }
}

/// Opens a producer on the queue, waiting while an SPSC queue's one producer is taken.
fn open(queue: &str) -> anyhow::Result<Producer> {
    let mut waited = 0u32;
    loop {
        match Producer::open(queue) {
            Ok(tx) => return Ok(tx),
            Err(Error::Busy(why)) => {
                if waited.is_multiple_of(30) {
                    log::warn(format_args!("queue {queue} has its producer already ({why}); waiting for it to go"));
                }
                waited += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => bail!("opening queue {queue} as a producer: {e}"),
        }
    }
}
