//! A Rust process for the interop tests: it produces or consumes the same deterministic
//! message stream as `tests/c/interop.c`, so a Rust producer can feed a C consumer and
//! the reverse.
//!
//! ```text
//! shmq-c-interop produce NAME COUNT SEED MAX_LEN
//! shmq-c-interop consume NAME COUNT SEED MAX_LEN
//! ```
//! Exits 0 after the whole stream went through (the consumer verifies every message in
//! order, byte for byte, and prints `consumed COUNT`), non-zero with a message otherwise.
//! Every wait is bounded (30 s per message).

use std::process::ExitCode;
use std::time::Duration;

use shmq_core::{Consumer, Producer};

const STEP: Duration = Duration::from_secs(30);

/// splitmix64: the generator `tests/c/check.h` implements too.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Message `i` of the stream `seed`: its length is in `0..=max_len`.
fn message(seed: u64, i: u64, max_len: u64, out: &mut Vec<u8>) {
    let len = (mix(seed.wrapping_mul(1_000_003).wrapping_add(i)) % (max_len + 1)) as usize;
    let h = mix(seed.wrapping_add(i));
    out.clear();
    out.extend((0..len).map(|j| ((h >> (8 * (j & 7))) as u8).wrapping_add((j >> 3) as u8)));
}

fn run(args: &[String]) -> Result<(), String> {
    let [role, name, count, seed, max_len] = args else {
        return Err("usage: shmq-c-interop produce|consume NAME COUNT SEED MAX_LEN".into());
    };
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    let (count, seed, max_len) = (num(count)?, num(seed)?, num(max_len)?);
    let mut expect = Vec::new();
    match role.as_str() {
        "produce" => {
            let mut tx = Producer::open(name).map_err(|e| format!("open producer: {e}"))?;
            for i in 0..count {
                message(seed, i, max_len, &mut expect);
                tx.send_timeout(&expect, STEP).map_err(|e| format!("send {i}: {e}"))?;
            }
            Ok(())
        }
        "consume" => {
            let mut rx = Consumer::open(name).map_err(|e| format!("open consumer: {e}"))?;
            for i in 0..count {
                message(seed, i, max_len, &mut expect);
                let msg = rx.recv_timeout(STEP).map_err(|e| format!("recv {i}: {e}"))?;
                if *msg != *expect {
                    return Err(format!(
                        "message {i}: got {} bytes, expected {} bytes or other content",
                        msg.len(),
                        expect.len()
                    ));
                }
            }
            println!("consumed {count}");
            Ok(())
        }
        r => Err(format!("unknown role {r:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmq-c-interop: {e}");
            ExitCode::FAILURE
        }
    }
}
