//! Throughput of `shmq-bridge`, each way, against a real `nats-server -js` on loopback that
//! this program starts (a free port, a scratch store directory, file storage).
//!
//! ```sh
//! cargo build --release -p shmq-bridge --examples
//! target/release/examples/throughput --size 64 --count 200000 --runs 5
//! target/release/examples/throughput --size 1024 --count 100000 --runs 5
//! ```
//!
//! * to-nats: the bridge runs (stream created); a producer sends `count` messages of `size`
//!   bytes into a 4 MiB queue as fast as it can; the time runs from the first send until the
//!   queue is empty, that is until the bridge released the last message after its publish ack.
//! * from-nats: `count` messages are published to a fresh stream first (not timed); the
//!   bridge starts with a new durable consumer; the time runs from the first message arriving
//!   in the queue to the last (a consumer drains the queue as fast as it can).
//!
//! `--window N` sets the bridge's `--window` (default 1024). Prints each run and the median of each direction, in messages per second.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use shmq::{Consumer, Error, Options, Producer, Queue};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect(name))
}

fn bridge_bin() -> PathBuf {
    // target/<profile>/examples/throughput -> target/<profile>/shmq-bridge
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe.parent().and_then(|d| d.parent()).expect("target dir").join("shmq-bridge");
    assert!(p.is_file(), "{} missing: cargo build --release -p shmq-bridge", p.display());
    p
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let size = arg("--size", 64) as usize;
    let count = arg("--count", 100_000);
    let runs = arg("--runs", 5);
    let window = arg("--window", 1024).to_string(); // the bridge's --window (shmq -> JetStream)
    let dir = std::env::temp_dir().join(format!("shmq-bridge-throughput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let _server = Killed(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on the PATH"),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let js = rt.block_on(async { jetstream::new(async_nats::connect(&url).await.expect("connect")) });
    let payload = vec![0x5au8; size];
    let (mut to, mut from) = (Vec::new(), Vec::new());
    for run in 0..runs {
        // shmq -> JetStream.
        let q = format!("tput{}-to{run}", std::process::id());
        Queue::create(&q, Options::new().capacity(4 << 20).max_message(64 << 10)).unwrap();
        let stats = dir.join(format!("to{run}.json"));
        let _bridge = Killed(
            Command::new(bridge_bin())
                .args(["--from-queue", &q, "--to-subject", &format!("tput.to{run}"), "--stream"])
                .arg(format!("TO{run}"))
                .args(["--nats-url", &url, "--quiet", "--window", &window, "--stats-file"])
                .arg(&stats)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        while !stats.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut tx = Producer::open(&q).unwrap();
        let t = Instant::now();
        for _ in 0..count {
            tx.send(&payload).unwrap();
        }
        while Queue::inspect(&q).unwrap().used_bytes > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let rate = count as f64 / t.elapsed().as_secs_f64();
        drop(tx);
        drop(_bridge);
        Queue::remove(&q).unwrap();
        to.push(rate);

        // JetStream -> shmq.
        let (subject, name) = (format!("tput.from{run}"), format!("FROM{run}"));
        rt.block_on(async {
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
            let mut acks = Vec::new();
            for i in 0..count {
                acks.push(js.publish(subject.clone(), payload.clone().into()).await.unwrap());
                if acks.len() == 1000 || i + 1 == count {
                    for a in acks.drain(..) {
                        a.await.unwrap();
                    }
                }
            }
        });
        let q = format!("tput{}-from{run}", std::process::id());
        Queue::create(&q, Options::new().capacity(4 << 20).max_message(64 << 10)).unwrap();
        let mut rx = Consumer::open(&q).unwrap();
        let _bridge = Killed(
            Command::new(bridge_bin())
                .args(["--from-subject", &subject, "--to-queue", &q, "--stream", &name, "--nats-url", &url, "--quiet"])
                .arg("--stats-file")
                .arg(dir.join(format!("from{run}.json")))
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut got = 0u64;
        let mut first = None;
        while got < count {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(m) => {
                    assert_eq!(m.len(), size);
                    got += 1;
                    first.get_or_insert_with(Instant::now);
                }
                Err(Error::Timeout) => panic!("from-nats: only {got} of {count} arrived"),
                Err(e) => panic!("{e}"),
            }
        }
        let rate = (count - 1) as f64 / first.unwrap().elapsed().as_secs_f64();
        drop(rx);
        drop(_bridge);
        Queue::remove(&q).unwrap();
        rt.block_on(async { js.delete_stream(&name).await.unwrap() });
        from.push(rate);
        println!(
            "run {run}: {size} B, {count} messages: to-nats {:.0} msg/s, from-nats {:.0} msg/s",
            to[to.len() - 1],
            rate
        );
    }
    println!(
        "median of {runs} runs, {size} B: shmq -> JetStream {:.0} msg/s, JetStream -> shmq {:.0} msg/s",
        median(to),
        median(from)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
