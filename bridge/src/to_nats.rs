//! shmq → JetStream.
//!
//! The bridge is the queue's one consumer ([`Consumer::open`]). It takes the messages that
//! are in the queue now (up to `--window`, waiting for the first) and **holds** them
//! ([`Consumer::recv_held_timeout`]): they stay in the queue, whose published consumer
//! position stops at the first of them. It publishes them all to JetStream (pipelined, each
//! with `Nats-Msg-Id: <queue>.<queue creation time in ns>.<message id>`), waits for every
//! publish ack, publishes again (same id) the ones that failed or timed out until they are
//! acked, and only then releases them ([`Consumer::release_held`]).
//!
//! Why nothing is lost: a message leaves the queue only when released, after its ack; a
//! bridge killed at any earlier point leaves it there, and the next `Consumer::open` (the
//! restarted bridge) receives it again. Why JetStream keeps no duplicate: the message comes
//! again with the same id (its position in the queue's stream, which never changes), so the
//! same `Nats-Msg-Id`, and JetStream drops a publish whose id it stored within the stream's
//! duplicate window (2 minutes by default). The queue's creation time in the id keeps a
//! queue removed and created again under the same name (whose ids start over) from
//! colliding with the old one's ids.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use shmq::{Consumer, Error};

use crate::nats::{self, Js};
use crate::stats::Stats;
use crate::{Args, log};

pub fn run(rt: &tokio::runtime::Runtime, args: &Args, js: Js, stats: &Stats) -> anyhow::Result<()> {
    let queue = args.from_queue.as_deref().expect("clap requires it");
    let subject = args.to_subject.as_deref().expect("clap requires it");
    rt.block_on(nats::ensure_stream(&js, args, subject))?;
    let mut rx = open(queue)?;
    let prefix = format!("{}.{}.", rx.config().name, rx.config().created_unix_ns);
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
        rt.block_on(publish_all(&js, subject, &prefix, &batch, stats));
        // Stored in JetStream, every one: now, and only now, release them from the queue.
        let last = batch.last().expect("a successful receive holds at least one message").0;
        rx.release_held(last)?;
        Stats::add(&stats.forwarded, batch.len() as u64);
    }
}

/// Publishes every message of `batch` and returns once JetStream acknowledged each,
/// publishing again (under the same `Nats-Msg-Id`) those whose publish failed or whose ack
/// did not come in time.
async fn publish_all(js: &Js, subject: &str, prefix: &str, batch: &[(u64, Bytes)], stats: &Stats) {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut attempt = 0u64;
    loop {
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
        for (i, r) in results {
            match r {
                Ok(ack) if ack.duplicate => Stats::add(&stats.duplicates, 1),
                Ok(_) => {}
                Err(e) => {
                    failed.push(i);
                    first_error.get_or_insert(e);
                }
            }
        }
        if failed.is_empty() {
            if attempt > 1 {
                log::info(format_args!("all {} messages of the batch published after {attempt} attempts", batch.len()));
            }
            return;
        }
        Stats::add(&stats.errors, 1);
        if attempt == 1 {
            // Counted once per message: each is published again until it is acked.
            Stats::add(&stats.redelivered, failed.len() as u64);
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

/// Opens the queue's consumer, waiting while another process holds it (a bridge still
/// stopping, or a consumer someone else runs).
fn open(queue: &str) -> anyhow::Result<Consumer> {
    let mut waited = 0u32;
    loop {
        match Consumer::open(queue) {
            Ok(rx) => {
                if waited > 0 {
                    log::info(format_args!("queue {queue}'s consumer is free now"));
                }
                return Ok(rx);
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
