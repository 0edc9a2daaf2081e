//! shmq → JetStream.
//!
//! The bridge is the queue's one consumer ([`Consumer::open`]). For each message it copies
//! the payload, publishes it with `Nats-Msg-Id: <queue>.<queue creation time in ns>.<message
//! id>`, waits for JetStream's publish ack, and only then drops the borrowed
//! [`shmq::Message`], which releases it and publishes the consumer position.
//!
//! Why nothing is lost: until the drop the queue's published position is at or before the
//! message, so a bridge killed at any earlier point leaves it in the queue, and the next
//! `Consumer::open` (the restarted bridge) receives it again. Why JetStream keeps no
//! duplicate: the message comes again with the same id (its position in the queue's
//! stream, which never changes), so the same `Nats-Msg-Id`, and JetStream drops a publish
//! whose id it stored within the stream's duplicate window (2 minutes by default). The
//! queue's creation time in the id keeps a queue removed and created again under the same
//! name (whose ids start over) from colliding with the old one's ids.
//!
//! The cost: one message in flight, one JetStream round trip per message. A queue's
//! consumer can hold one borrowed message at a time, and releasing it is what tells the
//! queue it was delivered; pipelining would need the library to let a consumer take several
//! messages before publishing its position (an explicit acknowledgement), which it does not
//! have yet.

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
        "forwarding queue {queue} to subject {subject} (stream {}); message ids {prefix}<id>",
        args.stream
    ));
    stats.write(js.is_connected());
    let mut last_log = Instant::now();
    let mut last_forwarded = 0;
    loop {
        if stats.maybe_write(js.is_connected()) && !args.quiet && last_log.elapsed() >= Duration::from_secs(10) {
            let f = stats.forwarded.get();
            if f != last_forwarded {
                log::info(format_args!("{}", stats.summary()));
                last_forwarded = f;
            }
            last_log = Instant::now();
        }
        let msg = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(Error::Timeout) => continue,
            Err(Error::Closed) => {
                stats.write(js.is_connected());
                bail!("queue {queue} was removed ({}); stopping", stats.summary());
            }
            Err(e) => bail!("receiving from queue {queue}: {e}"),
        };
        let msg_id = format!("{prefix}{}", msg.id());
        let payload = Bytes::copy_from_slice(&msg);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let publish = PublishMessage::build().payload(payload.clone()).message_id(&msg_id);
            let r = rt.block_on(async {
                let ack = js.ctx.send_publish(subject.to_owned(), publish).await?;
                ack.await.map_err(anyhow::Error::from)
            });
            match r {
                Ok(ack) => {
                    if ack.duplicate {
                        Stats::add(&stats.duplicates, 1);
                    }
                    break;
                }
                Err(e) => {
                    Stats::add(&stats.errors, 1);
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        log::warn(format_args!("publishing {msg_id} (attempt {attempt}): {e:#}; retrying"));
                    }
                    std::thread::sleep(Duration::from_millis((u64::from(attempt) * 50).min(1000)));
                    stats.maybe_write(js.is_connected());
                }
            }
        }
        if attempt > 1 {
            Stats::add(&stats.redelivered, 1);
            log::info(format_args!("published {msg_id} after {attempt} attempts"));
        }
        // Stored in JetStream: now, and only now, release it from the queue.
        drop(msg);
        Stats::add(&stats.forwarded, 1);
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
