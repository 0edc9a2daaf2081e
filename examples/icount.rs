//! A fixed, single-threaded workload for counting the instructions of the per-message paths
//! with callgrind (instruction counts are repeatable where wall-clock time is not).
//!
//! ```text
//! cargo build --release --example icount
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/icount --mode spsc --size 64 --messages 200000
//! callgrind_annotate --inclusive=yes cg.out | grep -E 'icount::(send|recv)_'
//! ```
//!
//! Divide each phase's inclusive count by its messages (below). `--mode mpsc`, `--size 8`
//! and `--send batch` give the other cases; `--durable DIR` makes the queue durable
//! (`Fsync::Never`, its log in a new directory under DIR, removed at the end), so that the
//! counts include the journal's writes, spread over the messages.
//!
//! One thread alternates a burst of `--burst` sends with draining them, so callgrind's
//! serialization of threads does not matter and every message takes the same paths as in a
//! stream: the phases are separate `#[inline(never)]` functions whose inclusive cost,
//! divided by the message count, is the per-message cost of:
//!
//! * `send_each`: `Producer::send`, one call per message (what `shmq bench` streams with),
//!   all `--messages`;
//! * `send_batch` (with `--send batch`, instead of `send_each`): `Producer::try_send_batch`
//!   of the whole burst (MPSC: in two calls when it meets the end of the region), all
//!   `--messages`;
//! * `recv_batch`: `Consumer::try_recv_batch` draining the burst (the streaming receiver),
//!   the first half of the messages;
//! * `recv_each`: `Consumer::try_recv`, one call and one release per message (what a
//!   request/response peer does), the second half;
//! * `recv_empty`: `Consumer::try_peek` on the empty queue, once per message after each
//!   drain (what a polling receiver pays per look at an empty queue; `try_peek` rather
//!   than `try_recv` so that the other phases' code stays as it was), `--messages` calls.
//!
//! Each count includes the harness's own loop (about a dozen instructions per message for
//! `send_each`, with its `black_box`).

use std::hint::black_box;

use shmq::{Consumer, Fsync, Mode, Options, Producer, Queue, Wait};

struct Args {
    mode: Mode,
    size: usize,
    messages: u64,
    burst: u64,
    batch: bool,
    durable: Option<std::path::PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { mode: Mode::Spsc, size: 64, messages: 200_000, burst: 250, batch: false, durable: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => a.mode = v.parse().map_err(|e: shmq::Error| e.to_string())?,
            "--size" => a.size = v.parse().map_err(|e| format!("--size: {e}"))?,
            "--messages" => a.messages = v.parse().map_err(|e| format!("--messages: {e}"))?,
            "--burst" => a.burst = v.parse().map_err(|e| format!("--burst: {e}"))?,
            "--durable" => a.durable = Some(v.into()),
            "--send" => match v.as_str() {
                "each" => a.batch = false,
                "batch" => a.batch = true,
                _ => return Err(format!("--send {v}: use each or batch")),
            },
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.burst == 0 || a.messages % (2 * a.burst) != 0 {
        return Err("--messages must be a multiple of 2 * --burst".into());
    }
    Ok(a)
}

#[inline(never)]
fn send_each(tx: &mut Producer, msg: &[u8], n: u64) {
    for _ in 0..n {
        tx.send(black_box(msg)).expect("send");
    }
}

#[inline(never)]
fn send_batch(tx: &mut Producer, msgs: &[&[u8]]) {
    // MPSC: one claim does not cross the end of the region, so a burst may take two.
    let mut sent = 0;
    while sent < msgs.len() {
        sent += tx.try_send_batch(black_box(&msgs[sent..])).expect("send_batch");
    }
}

#[inline(never)]
fn recv_batch(rx: &mut Consumer, n: u64) -> u64 {
    let mut sum = 0u64;
    let mut got = 0;
    while got < n {
        got += rx.try_recv_batch(n as usize, |m| sum += black_box(m).len() as u64).expect("recv") as u64;
    }
    sum
}

#[inline(never)]
fn recv_empty(rx: &mut Consumer, n: u64) {
    for _ in 0..n {
        assert!(rx.try_peek().expect("peek").is_none());
    }
}

#[inline(never)]
fn recv_each(rx: &mut Consumer, n: u64) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        let m = rx.try_recv().expect("recv").expect("a message");
        sum += black_box(&*m).len() as u64;
    }
    sum
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("icount: {e}");
            std::process::exit(2);
        }
    };
    let name = format!("icount-{}", std::process::id());
    let _ = Queue::remove(&name);
    let mut opts = Options::new().mode(a.mode).capacity(1 << 20).max_message(64 << 10);
    let dir = a.durable.as_ref().map(|d| d.join(&name));
    if let Some(dir) = &dir {
        opts = opts.durable(dir).fsync(Fsync::Never);
    }
    Queue::create(&name, opts).expect("create");
    let mut tx = Producer::open_with(&name, Wait::Spin).expect("producer");
    let mut rx = Consumer::open_with(&name, Wait::Spin).expect("consumer");
    let msg = vec![7u8; a.size];
    let burst: Vec<&[u8]> = vec![&msg[..]; a.burst as usize];
    let (mut bytes, rounds) = (0, a.messages / a.burst);
    for round in 0..rounds {
        if a.batch {
            send_batch(&mut tx, &burst);
        } else {
            send_each(&mut tx, &msg, a.burst);
        }
        bytes += if round < rounds / 2 { recv_batch(&mut rx, a.burst) } else { recv_each(&mut rx, a.burst) };
        recv_empty(&mut rx, a.burst);
    }
    assert_eq!(bytes, a.messages * a.size as u64);
    drop((tx, rx));
    Queue::remove(&name).expect("remove");
    if let Some(dir) = &dir {
        std::fs::remove_dir_all(dir).expect("remove the log");
    }
    println!("{} {} B messages: {} sent and received", a.mode, a.size, a.messages);
}
