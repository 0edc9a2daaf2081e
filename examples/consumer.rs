//! The consuming half of the README's quick start: receives `order 0`, `order 1`, … from a
//! queue, checks that each arrives once and in order, then removes the queue.
//!
//! ```text
//! cargo run --example consumer -- --queue orders --count 1000    # in one terminal
//! cargo run --example producer -- --queue orders --count 1000    # in another, in any order
//! ```
//!
//! Flags: those of `examples/producer.rs` (`--queue`, `--count`, `--capacity`,
//! `--max-message`, `--mode`, `--wait`; both programs must agree on the queue options), and:
//!
//! | flag | default | meaning |
//! | --- | --- | --- |
//! | `--timeout-ms N` | none: wait forever | give up when no message arrives for N ms |
//! | `--keep` | off | leave the queue in place at the end instead of removing it |
//!
//! Exit status: 0 when every message arrived in order, 1 otherwise, 2 for a bad flag.

use std::process::ExitCode;
use std::time::Duration;

use shmq::{Consumer, Mode, Options, Queue, Wait};

struct Args {
    queue: String,
    count: u64,
    options: Options,
    wait: Wait,
    timeout: Option<Duration>,
    keep: bool,
}

const USAGE: &str = "usage: consumer [--queue NAME] [--count N] [--capacity BYTES] [--max-message BYTES] \
                     [--mode spsc|mpsc] [--wait spin|block|adaptive] [--timeout-ms N] [--keep]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        queue: "orders".into(),
        count: 1000,
        options: Options::new(),
        wait: Wait::Adaptive,
        timeout: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--keep" => {
                a.keep = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--queue" => a.queue = value,
            "--count" => a.count = number(&value)?,
            "--capacity" => a.options = a.options.capacity(number(&value)?),
            "--max-message" => {
                let n = u32::try_from(number(&value)?).map_err(|_| format!("{flag} {value:?}: too large"))?;
                a.options = a.options.max_message(n);
            }
            "--mode" => a.options = a.options.mode(value.parse::<Mode>().map_err(|e| e.to_string())?),
            "--wait" => a.wait = value.parse().map_err(|e: shmq::Error| e.to_string())?,
            "--timeout-ms" => a.timeout = Some(Duration::from_millis(number(&value)?)),
            _ => return Err(format!("unknown flag {flag:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Both programs call this: the first creates the queue, the other checks that it has
    // the same mode, capacity and max_message.
    Queue::open_or_create(&a.queue, a.options.clone())?;
    let mut rx = Consumer::open_with(&a.queue, a.wait)?;
    for i in 0..a.count {
        let msg = match a.timeout {
            None => rx.recv()?, // waits while the queue is empty
            Some(t) => rx.recv_timeout(t)?,
        };
        let expected = format!("order {i}");
        if *msg != *expected.as_bytes() {
            return Err(format!("expected {expected:?}, received {:?}", String::from_utf8_lossy(&msg)).into());
        }
    } // each message is released back to the ring when `msg` is dropped
    println!("received {} messages from {:?}, in order", a.count, a.queue);
    drop(rx);
    if !a.keep {
        Queue::remove(&a.queue)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
