//! shmq → JetStream.
//!
//! The bridge is the queue's one consumer ([`Consumer::open`]). It takes the messages that
//! are in the queue now (up to `--window`, waiting for the first) and **holds** them
//! ([`Consumer::recv_held_timeout`]): they stay in the queue, whose published consumer
//! position stops at the first of them. It publishes them all to JetStream (pipelined, each
//! with `Nats-Msg-Id: <queue>.<id space>.<message id>`), waits for every publish ack,
//! publishes again (same id) the ones that failed or timed out until they are acked, and only
//! then releases them ([`Consumer::release_held`]).
//!
//! Why nothing is lost: a message leaves the queue only when released, after its ack; a
//! bridge killed at any earlier point leaves it there, and the next `Consumer::open` (the
//! restarted bridge) receives it again. Why JetStream keeps no duplicate: the message comes
//! again with the same id (its position in the queue's stream, which never changes), so the
//! same `Nats-Msg-Id`, and JetStream drops a publish whose id it stored within the stream's
//! duplicate window (2 minutes by default). The id space ([`shmq::Config::id_space`]: a
//! durable queue's log identity, which a restore from the log keeps as its ids go on; a
//! volatile queue's creation time) keeps a queue made again under the same name (whose ids
//! start over) from colliding with the old one's ids.
//!
//! A message larger than the server's `max_payload` cannot be published: the bridge publishes
//! the others, says so (the message's id, its size, the limit) and tries it again every 5
//! seconds, counting an error each time, until the server takes it (its `max_payload`
//! raised: the client learns the new limit when it reconnects). Nothing is dropped.
//!
//! A stream deleted while the bridge runs is made again, as a bridge starting would make it
//! (with a warning), and the messages not yet stored are published to it.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use shmq::{Consumer, Error};

use crate::nats::{self, Js};
use crate::stats::Stats;
use crate::{Args, Stop, log};

pub fn run(rt: &tokio::runtime::Runtime, args: &Args, js: Js, stats: &Stats, stop: &Stop) -> anyhow::Result<()> {
    let queue = args.from_queue.as_deref().expect("clap requires it");
    let subject = args.to_subject.as_deref().expect("clap requires it");
    if rt.block_on(nats::ensure_stream(&js, args, subject, stop, stats))?.is_none() {
        return Ok(()); // stopped
    }
    let Some(mut rx) = open(queue, stop)? else { return Ok(()) };
    let prefix = format!("{}.{}.", rx.config().name, rx.config().id_space());
    log::info(format_args!(
        "forwarding queue {queue} to subject {subject} (stream {}), up to {} messages in flight; \
         message ids {prefix}<id>",
        args.stream, args.window
    ));
    stats.write(js.is_connected());
    let mut last_log = Instant::now();
    let mut last_forwarded = 0;
    let mut batch: Vec<(u64, Bytes)> = Vec::with_capacity(args.window as usize);
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
        batch.clear();
        match rx.recv_held_timeout(args.window as usize, Duration::from_secs(1), |id, m| {
            batch.push((id, Bytes::copy_from_slice(m)))
        }) {
            Ok(_) => {}
            Err(Error::Timeout) => continue,
            Err(Error::Closed) => {
                stats.write(js.is_connected());
                bail!("queue {queue} was removed ({}); stopping", stats.summary());
            }
            Err(e) => bail!("receiving from queue {queue}: {e}"),
        }
        if !rt.block_on(publish_all(&js, args, subject, &prefix, &batch, stats, stop))? {
            // Stopped before JetStream acked them all: they stay in the queue (held messages
            // of a closed consumer are received again by the next one), and JetStream drops
            // the copies it has already when they come again.
            return Ok(());
        }
        // Stored in JetStream, every one: now, and only now, release them from the queue.
        let last = batch.last().expect("a successful receive holds at least one message").0;
        rx.release_held(last)?;
        Stats::add(&stats.forwarded, batch.len() as u64);
    }
}

/// Publishes every message of `batch` and returns `true` once JetStream acknowledged each,
/// publishing again (under the same `Nats-Msg-Id`) those whose publish failed or whose ack
/// did not come in time; `false` if a stop was asked for first. When no stream captures the
/// subject any more (the stream was deleted while the bridge ran), makes it again as at
/// start ([`nats::ensure_stream`], at most every 5 s); an error if that cannot be done (a
/// stream of that name now captures other subjects): the messages stay in the queue.
async fn publish_all(
    js: &Js,
    args: &Args,
    subject: &str,
    prefix: &str,
    batch: &[(u64, Bytes)],
    stats: &Stats,
    stop: &Stop,
) -> anyhow::Result<bool> {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut attempt = 0u64;
    let mut too_large_since: Option<Instant> = None;
    let mut stream_made: Option<Instant> = None;
    loop {
        if attempt > 0 && stop.asked() {
            return Ok(false);
        }
        attempt += 1;
        let mut acks = Vec::with_capacity(pending.len());
        for &i in &pending {
            let (id, payload) = &batch[i];
            let publish = PublishMessage::build().payload(payload.clone()).message_id(format!("{prefix}{id}"));
            acks.push((i, js.ctx.send_publish(subject.to_owned(), publish).await));
        }
        // All the acks at once: each waits at most --timeout, together (awaited one by one,
        // a lost connection would cost a timeout per message).
        let results = futures_util::future::join_all(acks.into_iter().map(|(i, sent)| async move {
            let r = match sent {
                Ok(ack) => ack.await.map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            (i, r)
        }))
        .await;
        let mut failed = Vec::new();
        let mut first_error = None;
        let mut too_large = None;
        let mut no_stream = false;
        for (i, r) in results {
            match r {
                Ok(ack) if ack.duplicate => Stats::add(&stats.duplicates, 1),
                Ok(_) => {}
                Err(e) => {
                    if too_large.is_none() && is_kind(&e, PublishErrorKind::MaxPayloadExceeded) {
                        too_large = Some(i);
                    }
                    no_stream |= is_kind(&e, PublishErrorKind::StreamNotFound);
                    failed.push(i);
                    first_error.get_or_insert(e);
                }
            }
        }
        if failed.is_empty() {
            if attempt > 1 {
                log::info(format_args!("all {} messages of the batch published after {attempt} attempts", batch.len()));
            }
            return Ok(true);
        }
        Stats::add(&stats.errors, 1);
        if let Some(i) = too_large {
            // Not a passing failure: it fails the same way until the server's limit is
            // raised. Said once a minute; tried again every 5 s.
            let (id, payload) = &batch[i];
            if too_large_since.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                log::error(format_args!(
                    "message {id} ({} bytes) is larger than the NATS server's max_payload ({} bytes): it \
                     cannot be published, and it and the messages after it stay in the queue; raise \
                     max_payload in the server's configuration (the bridge sees the new limit when it \
                     reconnects); trying again every 5 s",
                    payload.len(),
                    js.ctx.client().max_payload()
                ));
                too_large_since = Some(Instant::now());
            }
            stats.maybe_write(js.is_connected());
            pending = failed;
            for _ in 0..50 {
                if stop.asked() {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                stats.maybe_write(js.is_connected());
            }
            continue;
        }
        if attempt == 1 {
            // Counted once per message: each is published again until it is acked.
            Stats::add(&stats.redelivered, failed.len() as u64);
        }
        if no_stream && stream_made.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            // The server answered that nothing stores this subject: the stream is gone. A
            // bridge started now would make it; so does this one, and publishes again at once.
            log::warn(format_args!(
                "no stream captures subject {subject} any more (stream {} deleted?); making it again as at \
                 start; {} messages wait in the queue",
                args.stream,
                failed.len()
            ));
            stream_made = Some(Instant::now());
            if nats::ensure_stream(js, args, subject, stop, stats).await?.is_none() {
                return Ok(false);
            }
            pending = failed;
            continue;
        }
        if attempt == 1 || attempt.is_multiple_of(10) {
            let e = first_error.expect("a failure has an error");
            log::warn(format_args!(
                "{} of {} publishes failed (attempt {attempt}): {e:#}; publishing them again",
                failed.len(),
                batch.len()
            ));
        }
        stats.maybe_write(js.is_connected());
        tokio::time::sleep(Duration::from_millis((attempt * 50).min(1000))).await;
        pending = failed;
    }
}

/// Whether a publish failed for the reason `kind` (`MaxPayloadExceeded`: the message is
/// larger than the server takes; `StreamNotFound`: no stream captures the subject).
fn is_kind(e: &anyhow::Error, kind: PublishErrorKind) -> bool {
    e.downcast_ref::<async_nats::jetstream::context::PublishError>().is_some_and(|p| p.kind() == kind)
}

/// Opens the queue's consumer, waiting while another process holds it (a bridge still
/// stopping, or a consumer someone else runs). `None` if a stop was asked for first.
fn open(queue: &str, stop: &Stop) -> anyhow::Result<Option<Consumer>> {
    let mut waited = 0u32;
    loop {
        if stop.asked() {
            return Ok(None);
        }
        match Consumer::open(queue) {
            Ok(rx) => {
                if waited > 0 {
                    log::info(format_args!("queue {queue}'s consumer is free now"));
                }
                return Ok(Some(rx));
            }
            Err(Error::Busy(why)) => {
                if waited.is_multiple_of(30) {
                    log::warn(format_args!("queue {queue} has a consumer already ({why}); waiting for it to go"));
                }
                waited += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => bail!("opening queue {queue} as its consumer: {e}"),
        }
    }
}
