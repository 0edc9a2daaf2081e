//! In-process micro-benchmarks of the queue operations on a real shared-memory queue.
//!
//! * `pair/{spsc,mpsc}/SIZE`: one `try_send` then one `try_recv` on the same thread: the
//!   cost of the operations themselves, no cache line crossing cores.
//! * `batch/{spsc,mpsc}/64x64B`: `try_send_batch` of 64 messages, then `try_recv_batch`.
//! * `stream/spsc/SIZE`: a producer thread and a consumer thread streaming (cross-core),
//!   timed with `iter_custom`; throughput in bytes.
//!
//! Cross-process latency and the comparison with the floors and kernel transports are in
//! `examples/pingpong.rs` and `shmq bench`; tails come from HdrHistogram there, not from
//! criterion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmq::{Consumer, Mode, Options, Producer, Queue, Wait};

struct Q(String);

impl Q {
    fn new(tag: &str, mode: Mode) -> Q {
        let name = format!("bench-{tag}-{}", std::process::id());
        let _ = Queue::remove(&name);
        Queue::create(&name, Options::new().mode(mode).capacity(1 << 20).max_message(64 << 10)).expect("create");
        Q(name)
    }
}

impl Drop for Q {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.0);
    }
}

fn pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for mode in [Mode::Spsc, Mode::Mpsc] {
        for size in [8usize, 64, 1024, 64 << 10] {
            let q = Q::new("pair", mode);
            let mut tx = Producer::open(&q.0).unwrap();
            let mut rx = Consumer::open(&q.0).unwrap();
            let msg = vec![7u8; size];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(mode.to_string(), size), &size, |b, _| {
                b.iter(|| {
                    tx.try_send(black_box(&msg)).unwrap();
                    let m = rx.try_recv().unwrap().unwrap();
                    black_box(m.len());
                })
            });
        }
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    for mode in [Mode::Spsc, Mode::Mpsc] {
        let q = Q::new("batch", mode);
        let mut tx = Producer::open(&q.0).unwrap();
        let mut rx = Consumer::open(&q.0).unwrap();
        let msgs = vec![[5u8; 64]; 64];
        g.throughput(Throughput::Elements(64));
        g.bench_function(BenchmarkId::new(mode.to_string(), "64x64B"), |b| {
            b.iter(|| {
                assert_eq!(tx.try_send_batch(black_box(&msgs)).unwrap(), 64);
                let mut n = 0;
                while n < 64 {
                    n += rx
                        .try_recv_batch(64, |m| {
                            black_box(m);
                        })
                        .unwrap();
                }
            })
        });
    }
    g.finish();
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.measurement_time(Duration::from_secs(4));
    for size in [64usize, 64 << 10] {
        let q = Q::new("stream", Mode::Spsc);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("spsc", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let name = q.0.clone();
                let consumer = std::thread::spawn(move || {
                    let mut rx = Consumer::open_with(&name, Wait::Adaptive).unwrap();
                    let mut n = 0;
                    while n < iters {
                        n += rx
                            .recv_batch(256, |m| {
                                black_box(m);
                            })
                            .unwrap() as u64;
                    }
                });
                let mut tx = Producer::open_with(&q.0, Wait::Adaptive).unwrap();
                let msg = vec![3u8; size];
                let t0 = Instant::now();
                for _ in 0..iters {
                    tx.send(&msg).unwrap();
                }
                consumer.join().unwrap();
                t0.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, pair, batch, stream);
criterion_main!(benches);
