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
//! and not sent again (counted in `duplicates`), if it sent it within the [`Recent`]
//! horizon; every redelivery is counted in `redelivered`.
//!
//! A durable consumer deleted while the bridge runs is made again (the pull fails, and the
//! bridge looks it up before it pulls again): it delivers the stream from its start, and what
//! this process sent within the horizon is acked, not sent again.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
use async_nats::jetstream::stream::{ConsumerErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{AckKind, ErrorCode};
use futures_util::StreamExt;
use shmq::{Error, Producer};

use crate::nats::{self, Js};
use crate::stats::Stats;
use crate::{Args, Stop, log};

pub fn run(rt: &tokio::runtime::Runtime, args: &Args, js: Js, stats: &Stats, stop: &Stop) -> anyhow::Result<()> {
    let queue = args.to_queue.as_deref().expect("clap requires it");
    let subject = args.from_subject.as_deref().expect("clap requires it");
    let Some(mut tx) = open(queue, stop)? else { return Ok(()) };
    let Some(stream) = rt.block_on(nats::ensure_stream(&js, args, subject, stop, stats))? else { return Ok(()) };
    let durable = args.durable.clone().unwrap_or_else(|| default_durable(queue));
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: subject.to_owned(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: args.ack_wait,
        max_ack_pending: (args.batch * 4).max(1000) as i64,
        ..Default::default()
    };
    log::info(format_args!(
        "forwarding subject {subject} (stream {}, durable consumer {durable}) to queue {queue}",
        args.stream
    ));
    stats.write(js.is_connected());
    let mut last_log = Instant::now();
    let mut last_forwarded = 0;
    let mut last_look = Instant::now();
    let mut recent = Recent::new(horizon(args.ack_wait));
    let mut first = true;
    loop {
        // Looked up (made again if it was deleted) before every pull: a pull on a consumer
        // that no longer exists fails, and would fail again forever.
        let Some(consumer) = durable_consumer(rt, &stream, &durable, &config, first, stats, stop)? else {
            return Ok(());
        };
        first = false;
        let Some(mut messages) = retry(stats, stop, "starting to pull messages", || {
            rt.block_on(
                consumer
                    .stream()
                    .max_messages_per_batch(args.batch)
                    .heartbeat(Duration::from_secs(2))
                    .expires(Duration::from_secs(10))
                    .messages(),
            )
            .map_err(anyhow::Error::from)
        }) else {
            return Ok(());
        };
        loop {
            if stop.asked() {
                return Ok(());
            }
            if stats.maybe_write(js.is_connected()) && !args.quiet && last_log.elapsed() >= Duration::from_secs(10) {
                let f = stats.forwarded.get();
                if f != last_forwarded {
                    log::info(format_args!("{}", stats.summary()));
                    last_forwarded = f;
                }
                last_log = Instant::now();
            }
            let next = match rt.block_on(tokio::time::timeout(Duration::from_secs(1), messages.next())) {
                Err(_elapsed) => {
                    // Idle: is the queue still there? (A busy bridge learns it from its sends.)
                    if last_look.elapsed() >= Duration::from_secs(5) {
                        last_look = Instant::now();
                        check_queue(queue, &tx, stats)?;
                    }
                    continue;
                }
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
            match deliver(rt, &js, &stream, &mut tx, &m, seq, queue, stats, stop)? {
                Delivered::Sent => recent.insert(seq),
                Delivered::Gone => {}
                Delivered::Stopped => return Ok(()),
            }
            // In the queue (or gone from the stream): now, and only now, ack it. A lost ack
            // means a redelivery, not a loss.
            if let Err(e) = rt.block_on(m.ack()) {
                Stats::add(&stats.errors, 1);
                log::warn(format_args!("acking a message: {e} (JetStream will deliver it again)"));
            }
            Stats::add(&stats.forwarded, 1);
        }
    }
}

/// The default durable consumer's name: `shmq-bridge-<queue>`. Durable names may not hold
/// '.', which queue names may: a name with dots has them as '_' and a hash of the name
/// appended, so that `a.b` and `a_b` get consumers of their own.
fn default_durable(queue: &str) -> String {
    if !queue.contains('.') {
        return format!("shmq-bridge-{queue}");
    }
    // FNV-1a, 64 bits: stable across builds and platforms (the name must not change when
    // the bridge is rebuilt, or its consumer would start over).
    let hash = queue.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("shmq-bridge-{}-{:08x}", queue.replace('.', "_"), hash as u32)
}

/// The durable consumer, looked up, or made if it does not exist (at start, or deleted
/// since). Checks that an existing one reads our subject with explicit acks. `None` if a
/// stop was asked for first.
fn durable_consumer(
    rt: &tokio::runtime::Runtime,
    stream: &async_nats::jetstream::stream::Stream,
    durable: &str,
    config: &pull::Config,
    first: bool,
    stats: &Stats,
    stop: &Stop,
) -> anyhow::Result<Option<PullConsumer>> {
    let found = retry(stats, stop, "looking up the durable consumer", || {
        match rt.block_on(stream.get_consumer::<pull::Config>(durable)) {
            Ok(c) => Ok(Some(c)),
            Err(e)
                if e.downcast_ref::<ConsumerInfoError>()
                    .is_some_and(|i| i.kind() == ConsumerInfoErrorKind::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    });
    let consumer = match found {
        None => return Ok(None), // stopped
        Some(Some(c)) => c,
        Some(None) => {
            if !first {
                log::warn(format_args!(
                    "durable consumer {durable} is gone (deleted?); making it again: it delivers the \
                     stream from its start, and messages this bridge sent in the last {:.0?} are acked, \
                     not sent again (older ones reach the queue again)",
                    horizon(config.ack_wait)
                ));
            }
            let made = retry(stats, stop, "creating the durable consumer", || {
                match rt.block_on(stream.create_consumer(config.clone())) {
                    Ok(c) => Ok(Ok(c)),
                    // JetStream answered no (a configuration it refuses): the same answer
                    // every time.
                    Err(e) if matches!(e.kind(), ConsumerErrorKind::JetStream(_)) => Ok(Err(e)),
                    Err(e) => Err(e.into()),
                }
            });
            match made {
                None => return Ok(None),
                Some(Ok(c)) => c,
                Some(Err(e)) => bail!("JetStream refused to create durable consumer {durable}: {e}"),
            }
        }
    };
    // An existing durable consumer keeps its own configuration: it must read our subject.
    let existing = &consumer.cached_info().config;
    if existing.filter_subject != config.filter_subject || existing.ack_policy != AckPolicy::Explicit {
        bail!(
            "durable consumer {durable} of stream {} exists with filter subject {:?} and ack policy {:?}; \
             this bridge needs {:?} and explicit acks (choose another --durable)",
            consumer.cached_info().stream_name,
            existing.filter_subject,
            existing.ack_policy,
            config.filter_subject,
        );
    }
    if first && existing.ack_wait != config.ack_wait {
        log::warn(format_args!(
            "durable consumer {durable} exists with an ack wait of {:.0?}: it keeps it (--ack-wait {:.0?} \
             applies to a consumer the bridge creates; delete the consumer, or choose another --durable)",
            existing.ack_wait, config.ack_wait
        ));
    }
    Ok(Some(consumer))
}

/// Fails if the queue was removed (or removed and made again) since the bridge opened it.
fn check_queue(queue: &str, tx: &Producer, stats: &Stats) -> anyhow::Result<()> {
    match shmq::Queue::inspect(queue) {
        Err(Error::NotFound(_)) => bail!("queue {queue} was removed ({}); stopping", stats.summary()),
        Ok(s) if s.config.created_unix_ns != tx.config().created_unix_ns => {
            bail!("queue {queue} was removed and made again ({}); stopping", stats.summary())
        }
        _ => Ok(()),
    }
}

/// What became of a message [`deliver`] was given.
enum Delivered {
    /// In the queue.
    Sent,
    /// Not sent: it was removed from the stream while it could not be (too large).
    Gone,
    /// Not sent: a stop was asked for.
    Stopped,
}

/// Sends one message to the queue, waiting while it is full and telling JetStream every
/// second that the message is still being worked on (so that it is not delivered again
/// meanwhile). Fails only when the queue is gone.
#[allow(clippy::too_many_arguments)]
fn deliver(
    rt: &tokio::runtime::Runtime,
    js: &Js,
    stream: &async_nats::jetstream::stream::Stream,
    tx: &mut Producer,
    m: &async_nats::jetstream::Message,
    seq: u64,
    queue: &str,
    stats: &Stats,
    stop: &Stop,
) -> anyhow::Result<Delivered> {
    let mut full_since: Option<Instant> = None;
    let mut too_large_since: Option<Instant> = None;
    loop {
        match tx.send_timeout(&m.payload, Duration::from_secs(1)) {
            Ok(_) => {
                if let Some(t) = full_since {
                    log::info(format_args!("queue {queue} has room again after {:.1?}", t.elapsed()));
                }
                return Ok(Delivered::Sent);
            }
            Err(Error::Timeout) => {
                if full_since.is_none() {
                    log::warn(format_args!("queue {queue} is full; waiting (backpressure: nothing is dropped)"));
                    full_since = Some(Instant::now());
                }
                if let Err(e) = rt.block_on(m.ack_with(AckKind::Progress)) {
                    log::warn(format_args!("telling JetStream the message is in progress: {e}"));
                }
                stats.maybe_write(js.is_connected());
            }
            Err(e @ Error::TooLarge { .. }) => {
                // Never dropped: it waits for someone to make room (a queue with a larger
                // max_message under the same name) or to remove it from the stream.
                Stats::add(&stats.errors, 1);
                if too_large_since.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    log::error(format_args!(
                        "message {seq} of the stream ({} bytes) cannot go to queue {queue}: {e}; make the \
                         queue again with a larger max_message, or remove the message from the stream; \
                         trying again every 5 s",
                        m.payload.len()
                    ));
                    too_large_since = Some(Instant::now());
                }
                let _ = rt.block_on(m.ack_with(AckKind::Progress));
                for _ in 0..50 {
                    if stop.asked() {
                        return Ok(Delivered::Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    stats.maybe_write(js.is_connected());
                }
                if removed_from_stream(rt, stream, seq) {
                    log::warn(format_args!("message {seq} was removed from the stream: acked, not sent"));
                    return Ok(Delivered::Gone);
                }
            }
            Err(Error::Closed) => bail!("queue {queue} was removed ({}); stopping", stats.summary()),
            Err(e) => return Err(e).with_context(|| format!("sending to queue {queue}")),
        }
        if stop.asked() {
            return Ok(Delivered::Stopped);
        }
    }
}

/// Whether stream sequence `seq` is known to be gone from the stream (deleted or purged).
/// An error that says nothing about it (no answer) counts as still there.
fn removed_from_stream(rt: &tokio::runtime::Runtime, stream: &async_nats::jetstream::stream::Stream, seq: u64) -> bool {
    match rt.block_on(stream.get_raw_message(seq)) {
        Ok(_) => false,
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => true,
            LastRawMessageErrorKind::JetStream(j) => j.error_code() == ErrorCode::NO_MESSAGE_FOUND,
            _ => false,
        },
    }
}

/// How long [`Recent`] remembers a message sent: ten times `--ack-wait` (a redelivery
/// after a lost ack comes after one), and at least 10 minutes (a server restart, after
/// which the server delivers again what it had not stored as acked).
fn horizon(ack_wait: Duration) -> Duration {
    (ack_wait * 10).max(Duration::from_secs(600))
}

/// Stream sequences per [`Recent`] chunk (a bit each).
const CHUNK: u64 = 4096;

/// The stream sequences of the messages this process sent to the queue within a horizon
/// ([`horizon`]): a message JetStream delivers again (its ack was late, or lost in a
/// disconnection or a server restart) that is among them is acked, not sent twice. A bitmap
/// in chunks of 4,096 sequences, a chunk forgotten once no sequence of it was sent within the
/// horizon: memory follows the rate (100,000 msg/s for 10 minutes: 7.5 MB), not a count
/// (the last 65,536 sequences, before: 0.7 s at that rate, far less than a redelivery
/// takes). A bridge started anew remembers nothing: what the previous one sent but had not
/// acked is sent again (at least once).
struct Recent {
    chunks: std::collections::HashMap<u64, (Box<[u64; (CHUNK / 64) as usize]>, Instant)>,
    horizon: Duration,
    swept: Instant,
}

impl Recent {
    fn new(horizon: Duration) -> Recent {
        Recent { chunks: Default::default(), horizon, swept: Instant::now() }
    }

    fn contains(&self, seq: u64) -> bool {
        let (chunk, word, bit) = (seq / CHUNK, (seq % CHUNK / 64) as usize, seq % 64);
        seq != 0 && self.chunks.get(&chunk).is_some_and(|(bits, _)| bits[word] & (1 << bit) != 0)
    }

    fn insert(&mut self, seq: u64) {
        self.insert_at(seq, Instant::now());
    }

    fn insert_at(&mut self, seq: u64, now: Instant) {
        if seq == 0 {
            return;
        }
        let (chunk, word, bit) = (seq / CHUNK, (seq % CHUNK / 64) as usize, seq % 64);
        let (bits, touched) = self.chunks.entry(chunk).or_insert_with(|| (Box::new([0; (CHUNK / 64) as usize]), now));
        bits[word] |= 1 << bit;
        *touched = now;
        if now.duration_since(self.swept) >= self.horizon / 10 {
            let horizon = self.horizon;
            self.chunks.retain(|_, (_, t)| now.duration_since(*t) < horizon);
            self.swept = now;
        }
    }
}

/// Calls `f` until it succeeds, logging and counting each failure, backing off to 1 s.
/// `None` if a stop was asked for first.
fn retry<T>(stats: &Stats, stop: &Stop, what: &str, mut f: impl FnMut() -> anyhow::Result<T>) -> Option<T> {
    let mut attempt = 0u64;
    loop {
        if stop.asked() {
            return None;
        }
        match f() {
            Ok(v) => return Some(v),
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
/// `None` if a stop was asked for first.
fn open(queue: &str, stop: &Stop) -> anyhow::Result<Option<Producer>> {
    let mut waited = 0u32;
    loop {
        if stop.asked() {
            return Ok(None);
        }
        match Producer::open(queue) {
            Ok(tx) => return Ok(Some(tx)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_remembers_every_sequence_sent_within_the_horizon_and_forgets_after() {
        let t0 = Instant::now();
        let mut r = Recent::new(Duration::from_secs(600));
        // More than the 65,536 of the old memory, sparse (a filtered subject) and dense.
        for seq in (1..200_000u64).step_by(3) {
            r.insert_at(seq, t0);
        }
        assert!(r.contains(1) && r.contains(4) && r.contains(199_999 - 199_999 % 3 + 1));
        assert!(!r.contains(2) && !r.contains(3) && !r.contains(0) && !r.contains(300_000));
        // Still there just inside the horizon; a sequence sent later keeps its own chunk.
        r.insert_at(1_000_000, t0 + Duration::from_secs(599));
        assert!(r.contains(1) && r.contains(1_000_000));
        // Past the horizon: the old chunks are forgotten at the next sweep, the recent kept.
        r.insert_at(1_000_001, t0 + Duration::from_secs(700));
        assert!(!r.contains(1) && !r.contains(4));
        assert!(r.contains(1_000_000) && r.contains(1_000_001));
    }

    #[test]
    fn default_durable_names_differ_for_names_that_differ() {
        assert_eq!(default_durable("orders"), "shmq-bridge-orders");
        assert_eq!(default_durable("a_b"), "shmq-bridge-a_b");
        let dotted = default_durable("a.b");
        assert!(dotted.starts_with("shmq-bridge-a_b-") && !dotted.contains('.'), "{dotted}");
        assert_ne!(dotted, default_durable("a_b"));
        assert_ne!(default_durable("a.b.c"), default_durable("a_b.c"));
        assert_eq!(default_durable("a.b"), dotted, "stable");
    }

    #[test]
    fn the_horizon_is_ten_ack_waits_and_at_least_ten_minutes() {
        assert_eq!(horizon(Duration::from_secs(30)), Duration::from_secs(600));
        assert_eq!(horizon(Duration::from_secs(120)), Duration::from_secs(1200));
    }
}
