//! The producing half of the README's quick start: sends `order 0`, `order 1`, … into a queue.
//!
//! ```text
//! cargo run --example consumer -- --queue orders --count 1000    # in one terminal
//! cargo run --example producer -- --queue orders --count 1000    # in another, in any order
//! ```
//!
//! Flags (the same in both programs; both must agree on the queue options):
//!
//! | flag | default | meaning |
//! | --- | --- | --- |
//! | `--queue NAME` | `orders` | queue name (`/dev/shm/shmq.NAME`) |
//! | `--count N` | `1000` | messages to send |
//! | `--capacity BYTES` | `1048576` | ring size, a power of two from 1024 |
//! | `--max-message BYTES` | `65536` | largest message, at most half the capacity |
//! | `--mode spsc\|mpsc` | `mpsc` | one producer, or many |
//! | `--wait spin\|block\|adaptive` | `adaptive` | how `send` waits while the queue is full |
//!
//! Whichever program starts first creates the queue with `Queue::open_or_create`; the other
//! opens it. The producer may finish before the consumer starts: the messages wait in shared
//! memory. The consumer removes the queue when it has received everything.

use std::process::ExitCode;

use shmq::{Mode, Options, Producer, Queue, Wait};

struct Args {
    queue: String,
    count: u64,
    options: Options,
    wait: Wait,
}

const USAGE: &str = "usage: producer [--queue NAME] [--count N] [--capacity BYTES] [--max-message BYTES] \
                     [--mode spsc|mpsc] [--wait spin|block|adaptive]";

fn parse() -> Result<Args, String> {
    let mut a = Args { queue: "orders".into(), count: 1000, options: Options::new(), wait: Wait::Adaptive };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
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
            _ => return Err(format!("unknown flag {flag:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> Result<(), shmq::Error> {
    // Both programs call this: the first creates the queue, the other checks that it has
    // the same mode, capacity and max_message.
    Queue::open_or_create(&a.queue, a.options.clone())?;
    let mut tx = Producer::open_with(&a.queue, a.wait)?;
    for i in 0..a.count {
        tx.send(format!("order {i}").as_bytes())?; // waits while the queue is full
    }
    println!("sent {} messages to {:?}", a.count, a.queue);
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
            eprintln!("producer: {e}");
            ExitCode::FAILURE
        }
    }
}
