//! The bridge against a real `nats-server -js` on loopback, with failures: each test starts
//! its own server (a free port, its own store directory), the `shmq-bridge` binary as a
//! process of its own, and moves `SHMQ_BRIDGE_TEST_MESSAGES` messages (100,000 unless set)
//! while it kills the server (`kill -9`, then restarts it on the same store) twice and the
//! bridge (`kill -9`, then restarts it) twice. Every message must arrive; duplicates are
//! counted, and must be 0 from shmq to JetStream.
//!
//! `SHMQ_BRIDGE_TEST_KEEP=1` keeps the scratch directories (server and bridge logs, the
//! bridge's stats file); they are kept anyway when a test fails.
//!
//! Needs `nats-server` on the PATH (Debian's package; `.ci/run` installs it), or its path in
//! `NATS_SERVER`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use shmq::{Consumer, Error, Options, Producer, Queue};

/// How long any one phase may take before the test fails instead of hanging.
const PHASE: Duration = Duration::from_secs(180);

/// One test at a time: each runs a server, a bridge and a 100,000-message stream on two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn messages() -> u64 {
    std::env::var("SHMQ_BRIDGE_TEST_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn note(msg: std::fmt::Arguments<'_>) {
    eprintln!("[test {:?}] {msg}", std::thread::current().name().unwrap_or("?"));
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("shmq-bridge-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create the scratch directory");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SHMQ_BRIDGE_TEST_KEEP").is_some() {
            eprintln!("keeping {} (logs)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A queue removed on drop.
struct TestQueue(String);

impl TestQueue {
    fn create(tag: &str, options: Options) -> TestQueue {
        let name = format!("tb{}-{tag}", std::process::id());
        let _ = Queue::remove(&name);
        Queue::create(&name, options).expect("create the test queue");
        TestQueue(name)
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
struct Proc(Option<Child>);

impl Proc {
    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().unwrap().port()
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).expect("open a log file")
}

/// `nats-server -js` on 127.0.0.1:`port` with its store in `dir/store`.
struct Server {
    port: u16,
    dir: PathBuf,
    proc: Proc,
    /// A configuration file's lines (`max_payload: 4096`), or none.
    config: Option<String>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut s = Server { port: free_port(), dir: dir.to_owned(), proc: Proc(None), config: None };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut cmd = Command::new(&bin);
        if let Some(lines) = &self.config {
            let path = self.dir.join("server.conf");
            std::fs::write(&path, lines).expect("write the server's configuration");
            cmd.arg("-c").arg(path);
        }
        let child = cmd
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir, "server.log"))
            .stderr(log_file(&self.dir, "server.log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): install it (Debian: apt-get install nats-server) or set NATS_SERVER")
            });
        self.proc = Proc(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on port {} within 30 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        self.proc.kill9();
    }
}

/// The `shmq-bridge` binary, with the same arguments at every (re)start.
struct Bridge {
    args: Vec<String>,
    dir: PathBuf,
    proc: Proc,
    starts: u32,
}

impl Bridge {
    fn start(dir: &Path, args: Vec<String>) -> Bridge {
        let mut b = Bridge { args, dir: dir.to_owned(), proc: Proc(None), starts: 0 };
        b.restart();
        b
    }

    fn restart(&mut self) {
        self.starts += 1;
        let child = Command::new(env!("CARGO_BIN_EXE_shmq-bridge"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, "bridge.log"))
            .spawn()
            .expect("start shmq-bridge");
        self.proc = Proc(Some(child));
    }

    fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Sends `sig` (`TERM`, `INT`) and waits for the exit: its status.
    fn signal_and_wait(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.proc.0.take().expect("the bridge runs");
        let ok = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the bridge") {
                return status;
            }
            assert!(Instant::now() < deadline, "the bridge did not exit within 30 s of SIG{sig}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }
}

/// A counter from the bridge's stats file (0 while there is none).
fn stat(dir: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(dir.join("stats.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v[key].as_u64()).unwrap_or(0)
}

/// Waits until `cond` holds, failing the test after [`PHASE`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PHASE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The failures, at 1/5, 2/5, 3/5 and 4/5 of the way: server, bridge, server, bridge.
fn chaos(n: u64, progress: impl Fn() -> u64, server: &mut Server, bridge: &mut Bridge) {
    for step in 1..=4u64 {
        let at = n * step / 5;
        wait_for(&format!("{at} of {n} messages through"), || progress() >= at);
        if step % 2 == 1 {
            note(format_args!("{} through: kill -9 nats-server, restart it in 300 ms", progress()));
            server.kill9();
            std::thread::sleep(Duration::from_millis(300));
            server.restart();
        } else {
            // The JetStream -> shmq reader pauses here: give the bridge time to fill the queue
            // and block in its send, so that it dies holding a message it has not delivered.
            std::thread::sleep(Duration::from_millis(500));
            note(format_args!("{} through: kill -9 the bridge, restart it", progress()));
            bridge.kill9();
            std::thread::sleep(Duration::from_millis(100));
            bridge.restart();
        }
    }
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0xa5u8; len.max(8)];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p
}

fn seq_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes"))
}

/// Counts of each sequence number seen.
struct Tally {
    seen: Vec<u8>,
    unique: u64,
    duplicates: u64,
}

impl Tally {
    fn new(n: u64) -> Tally {
        Tally { seen: vec![0; n as usize], unique: 0, duplicates: 0 }
    }

    fn add(&mut self, m: &[u8]) {
        let seq = seq_of(m);
        let slot =
            self.seen.get_mut(seq as usize).unwrap_or_else(|| panic!("a message with sequence {seq} was never sent"));
        if *slot == 0 {
            self.unique += 1;
        } else {
            self.duplicates += 1;
        }
        *slot = slot.saturating_add(1);
    }

    fn missing(&self) -> Vec<u64> {
        self.seen.iter().enumerate().filter(|(_, c)| **c == 0).map(|(i, _)| i as u64).take(10).collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn every_message_from_a_queue_reaches_jetstream_once_through_server_and_bridge_kills() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = messages();
    let started = Instant::now();
    let dir = TempDir::new("to");
    let mut server = Server::start(&dir.0);
    let q = TestQueue::create("to", Options::new().capacity(256 << 10).max_message(1024));
    let (subject, stream_name) = (format!("shmqtest.{}.to", std::process::id()), format!("TO{}", std::process::id()));
    let mut bridge = Bridge::start(
        &dir.0,
        vec![
            "--from-queue".into(),
            q.0.clone(),
            "--to-subject".into(),
            subject.clone(),
            "--stream".into(),
            stream_name.clone(),
            "--nats-url".into(),
            server.url(),
            "--timeout".into(),
            "1s".into(),
            "--stats-file".into(),
            dir.0.join("stats.json").display().to_string(),
        ],
    );

    // The producer: a thread of this process (the bridge is another process).
    let producer = {
        let name = q.0.clone();
        std::thread::spawn(move || {
            let mut tx = Producer::open(&name).expect("open the producer");
            for seq in 0..n {
                tx.send(&payload(seq, 16)).expect("send");
            }
        })
    };
    // The queue holds about 8,000 messages: the producer goes at the bridge's pace. Progress
    // is what the bridge released (after JetStream's acks): the queue's consumer position
    // over the record size (16-byte header + 16-byte payload).
    let released = || Queue::inspect(&q.0).map_or(0, |s| s.head / 32);
    chaos(n, released, &mut server, &mut bridge);
    producer.join().expect("the producer thread");
    wait_for("the bridge to release every message (an empty queue)", || {
        let s = Queue::inspect(&q.0).expect("inspect");
        s.used_bytes == 0
    });
    note(format_args!("all {n} released by the bridge after {:.1?}", started.elapsed()));
    let stats = std::fs::read_to_string(dir.0.join("stats.json")).unwrap_or_default();
    bridge.kill9();

    // Read the stream back.
    let tally = read_stream(&server, &stream_name, n);
    note(format_args!(
        "{n} messages: {} in JetStream, {} duplicates, in {:.1?}; last bridge counters {}",
        tally.unique,
        tally.duplicates,
        started.elapsed(),
        stats.trim()
    ));
    assert_eq!(tally.unique, n, "messages missing from JetStream, the first: {:?}", tally.missing());
    assert_eq!(tally.duplicates, 0, "duplicates in JetStream");
    assert_eq!(bridge.starts, 3);
}

#[test]
fn every_message_from_jetstream_reaches_a_queue_through_server_and_bridge_kills_and_a_full_queue() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = messages();
    let started = Instant::now();
    let dir = TempDir::new("from");
    let mut server = Server::start(&dir.0);
    let q = TestQueue::create("from", Options::new().capacity(64 << 10).max_message(1024));
    let (subject, stream_name) =
        (format!("shmqtest.{}.from", std::process::id()), format!("FROM{}", std::process::id()));

    // The stream, filled before the bridge starts (with publish acks, so all n are stored).
    let rt = runtime();
    rt.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect to fill the stream");
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the stream");
        let mut acks = Vec::new();
        for seq in 0..n {
            acks.push(js.publish(subject.clone(), payload(seq, 16).into()).await.expect("publish"));
            if acks.len() == 1000 || seq + 1 == n {
                for a in acks.drain(..) {
                    a.await.expect("publish ack");
                }
            }
        }
    });
    note(format_args!("{n} messages in the stream after {:.1?}", started.elapsed()));

    let mut bridge = Bridge::start(
        &dir.0,
        vec![
            "--from-subject".into(),
            subject.clone(),
            "--to-queue".into(),
            q.0.clone(),
            "--stream".into(),
            stream_name.clone(),
            "--nats-url".into(),
            server.url(),
            "--timeout".into(),
            "1s".into(),
            "--ack-wait".into(),
            "2s".into(),
            "--stats-file".into(),
            dir.0.join("stats.json").display().to_string(),
        ],
    );

    // The consumer: a thread of this process. It pauses 3 s (longer than --ack-wait) once, at
    // 2/5 of the way, where the bridge is killed: the bridge fills the queue and blocks in a
    // send, then dies holding that message (which must come again: acked before the send, it
    // would be lost), and its successor blocks too (it must wait, not drop, and keep the
    // message it holds from being delivered again meanwhile).
    let unique = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (name, unique, stop) = (q.0.clone(), unique.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rx = Consumer::open(&name).expect("open the consumer");
            let mut tally = Tally::new(n);
            let mut paused = false;
            // Redeliveries come within --ack-wait (2 s) of a failure: a minute without a new
            // message means one is lost.
            let mut last_new = Instant::now();
            while tally.unique < n {
                assert!(
                    last_new.elapsed() < Duration::from_secs(60),
                    "only {} of {n} messages arrived (none new for 60 s), the first missing: {:?}",
                    tally.unique,
                    tally.missing()
                );
                // Relaxed: a flag; nothing else is ordered by it.
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if !paused && tally.unique >= n * 2 / 5 {
                    paused = true;
                    std::thread::sleep(Duration::from_secs(3));
                    last_new = Instant::now();
                }
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => {
                        let before = tally.unique;
                        tally.add(&m);
                        if tally.unique > before {
                            last_new = Instant::now();
                        }
                    }
                    Err(Error::Timeout) => continue,
                    Err(e) => panic!("receive: {e}"),
                }
                // Relaxed: a progress count for the chaos schedule only.
                unique.store(tally.unique, Ordering::Relaxed);
            }
            tally
        })
    };
    chaos(n, || unique.load(Ordering::Relaxed), &mut server, &mut bridge);
    let tally = reader.join().expect("the reader thread");
    stop.store(true, Ordering::Relaxed);
    let stats = std::fs::read_to_string(dir.0.join("stats.json")).unwrap_or_default();
    note(format_args!(
        "{n} messages: {} arrived in the queue, {} duplicates, in {:.1?}; last bridge counters {}",
        tally.unique,
        tally.duplicates,
        started.elapsed(),
        stats.trim()
    ));
    assert_eq!(tally.unique, n, "messages missing from the queue, the first: {:?}", tally.missing());
    assert_eq!(bridge.starts, 3);
}

/// Every message of stream `stream_name` (read back by a consumer of the test's own).
fn read_stream(server: &Server, stream_name: &str, n: u64) -> Tally {
    runtime().block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect to check");
        let js = jetstream::new(client);
        let mut st = js.get_stream(stream_name).await.expect("the bridge created the stream");
        let stored = st.info().await.expect("stream info").state.messages;
        let c = st
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("a consumer to read the stream back");
        let mut msgs = c.messages().await.expect("pull");
        let mut tally = Tally::new(n);
        let deadline = tokio::time::Instant::now() + PHASE;
        for _ in 0..stored {
            let m = tokio::time::timeout_at(deadline, msgs.next())
                .await
                .expect("reading the stream back timed out")
                .expect("the pull ended")
                .expect("a message");
            tally.add(&m.payload);
        }
        tally
    })
}

/// The arguments of a bridge from queue `queue` to `subject` in `stream_name`.
fn to_nats_args(queue: &str, subject: &str, stream_name: &str, server: &Server, dir: &Path) -> Vec<String> {
    [
        "--from-queue",
        queue,
        "--to-subject",
        subject,
        "--stream",
        stream_name,
        "--nats-url",
        &server.url(),
        "--timeout",
        "1s",
        "--stats-file",
        &dir.join("stats.json").display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The arguments of a bridge from `subject` in `stream_name` to queue `queue`, then `extra`.
fn from_nats_args(
    subject: &str,
    queue: &str,
    stream_name: &str,
    server: &Server,
    dir: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = [
        "--from-subject",
        subject,
        "--to-queue",
        queue,
        "--stream",
        stream_name,
        "--nats-url",
        &server.url(),
        "--timeout",
        "1s",
        "--stats-file",
        &dir.join("stats.json").display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// A JetStream context on `server` and stream `name` for `subject`, made by the test.
async fn make_stream(server: &Server, name: &str, subject: &str) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        ..Default::default()
    })
    .await
    .expect("create the stream");
    js
}

/// What the tests below start with: the lock that runs them one at a time, a scratch
/// directory, a server, a queue, and a subject and a stream of their own.
struct Setup {
    _serial: std::sync::MutexGuard<'static, ()>,
    dir: TempDir,
    server: Server,
    q: TestQueue,
    subject: String,
    stream: String,
}

fn setup(tag: &str, options: Options) -> Setup {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(tag);
    let server = Server::start(&dir.0);
    let q = TestQueue::create(tag, options);
    let pid = std::process::id();
    let subject = format!("shmqtest.{pid}.{tag}");
    let stream = format!("{}{pid}", tag.to_uppercase());
    Setup { _serial: serial, dir, server, q, subject, stream }
}

/// A durable queue restored from its log (the shared-memory object removed, as at a host
/// restart) keeps its ids, and the bridge its message ids: what the bridge killed before the
/// restart had published but not released comes again under the same ids, and JetStream
/// stores each message once. (With the queue's creation time in the message id, a restore
/// changed every id, and JetStream stored thousands of messages twice.) Then SIGTERM: the
/// bridge finishes, writes its counters and exits 0.
#[test]
fn a_durable_queue_restored_from_its_log_reaches_jetstream_once_and_sigterm_stops_the_bridge_cleanly() {
    let n = messages().min(20_000);
    let log = std::env::temp_dir().join(format!("shmq-bridge-test-restore-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log);
    let log = TempDir(log);
    let options = Options::new().capacity(256 << 10).max_message(1024).durable(&log.0).fsync(shmq::Fsync::Never);
    let Setup { _serial, dir, mut server, q, subject, stream: stream_name } = setup("restore", options.clone());
    let mut tx = Producer::open(&q.0).expect("open the producer");
    for seq in 0..n {
        tx.send(&payload(seq, 16)).expect("send");
    }
    drop(tx);
    let mut bridge = Bridge::start(&dir.0, to_nats_args(&q.0, &subject, &stream_name, &server, &dir.0));
    wait_for("half the messages forwarded", || stat(&dir.0, "forwarded") >= n / 2);
    // Killed: no consumer position written at close; the restore starts before what it sent.
    bridge.kill9();
    Queue::remove(&q.0).expect("remove the shared-memory object");
    Queue::open_or_create(&q.0, options).expect("restore the queue from its log");
    let restored = Queue::inspect(&q.0).expect("inspect").messages;
    note(format_args!("restored with {restored} messages to go"));
    bridge.restart();
    wait_for("the bridge to release every message (an empty queue)", || {
        Queue::inspect(&q.0).expect("inspect").used_bytes == 0
    });
    let tally = read_stream(&server, &stream_name, n);
    note(format_args!("{n} messages: {} in JetStream, {} duplicates", tally.unique, tally.duplicates));
    assert_eq!(tally.unique, n, "messages missing from JetStream, the first: {:?}", tally.missing());
    assert_eq!(tally.duplicates, 0, "duplicates in JetStream after the restore");
    let status = bridge.signal_and_wait("TERM");
    assert!(status.success(), "the bridge's exit on SIGTERM: {status:?}; its log:\n{}", bridge.log());
    assert!(bridge.log().contains("stopped on a signal"), "{}", bridge.log());
    server.kill9();
}

/// A message larger than the server's `max_payload` cannot be published: the bridge
/// publishes the others, says why in its log, keeps its counters file fresh (errors
/// counted), and publishes the message once the server takes it (restarted with a higher
/// limit). Before, it said "publishing them again" every second forever and never recovered.
#[test]
fn a_message_larger_than_max_payload_waits_with_a_clear_error_and_goes_once_the_limit_is_raised() {
    let Setup { _serial, dir, mut server, q, subject, stream: stream_name } =
        setup("big", Options::new().capacity(256 << 10).max_message(16 << 10));
    server.kill9();
    server.config = Some("max_payload: 4096\n".into());
    server.restart();
    let mut tx = Producer::open(&q.0).expect("open the producer");
    for (seq, len) in [(0u64, 16usize), (1, 10_000), (2, 16)] {
        tx.send(&payload(seq, len)).expect("send");
    }
    let mut bridge = Bridge::start(&dir.0, to_nats_args(&q.0, &subject, &stream_name, &server, &dir.0));
    wait_for("the bridge to say the message is too large", || {
        bridge.log().contains("larger than the NATS server's max_payload")
    });
    let log = bridge.log();
    assert!(log.contains("message 32 (10000 bytes)") && log.contains("(4096 bytes)"), "{log}");
    // Its counters file stays fresh while it waits, and counts the failures.
    wait_for("the failures counted in the counters file", || stat(&dir.0, "errors") >= 1);
    let updated = stat(&dir.0, "updated_unix_ms");
    wait_for("a fresher counters file", || stat(&dir.0, "updated_unix_ms") > updated);
    assert!(Queue::inspect(&q.0).unwrap().used_bytes > 0, "nothing released while one is not stored");
    // The limit raised (a restart with the default 1 MB): the message goes, and all three are
    // released.
    server.kill9();
    server.config = None;
    server.restart();
    wait_for("the bridge to release every message (an empty queue)", || {
        Queue::inspect(&q.0).expect("inspect").used_bytes == 0
    });
    bridge.kill9();
    let tally = read_stream(&server, &stream_name, 3);
    assert_eq!((tally.unique, tally.duplicates), (3, 0), "the stream: {:?} missing", tally.missing());
    server.kill9();
}

/// JetStream -> shmq: a durable consumer deleted while the bridge runs is made again, and
/// messages published after that reach the queue (before: "consumer deleted", then "missed
/// idle heartbeat" every 4 s, forever). The new consumer delivers the stream from its start:
/// the messages this bridge sent already are acked, not sent twice.
#[test]
fn a_deleted_durable_consumer_is_made_again_and_later_messages_arrive_once() {
    let Setup { _serial, dir, mut server, q, subject, stream: stream_name } =
        setup("rmconsumer", Options::new().capacity(64 << 10).max_message(1024));
    let rt = runtime();
    let js = rt.block_on(make_stream(&server, &stream_name, &subject));
    let publish = |range: std::ops::Range<u64>| {
        rt.block_on(async {
            for seq in range {
                js.publish(subject.clone(), payload(seq, 16).into()).await.expect("publish").await.expect("ack");
            }
        })
    };
    publish(0..10);
    let mut bridge =
        Bridge::start(&dir.0, from_nats_args(&subject, &q.0, &stream_name, &server, &dir.0, &["--durable", "rmc"]));
    let mut rx = Consumer::open(&q.0).expect("open the consumer");
    let mut tally = Tally::new(20);
    let mut take = |tally: &mut Tally, until: u64| {
        let deadline = Instant::now() + PHASE;
        while tally.unique < until {
            assert!(Instant::now() < deadline, "only {} messages arrived; log:\n{}", tally.unique, bridge.log());
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => tally.add(&m),
                Err(Error::Timeout) => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    };
    take(&mut tally, 10);
    rt.block_on(async {
        let st = js.get_stream(&stream_name).await.expect("the stream");
        st.delete_consumer("rmc").await.expect("delete the durable consumer");
    });
    publish(10..20);
    take(&mut tally, 20);
    // Anything sent twice would have arrived by now (the new consumer delivers in order).
    std::thread::sleep(Duration::from_secs(1));
    while let Ok(Some(m)) = rx.try_recv() {
        tally.add(&m);
    }
    assert_eq!((tally.unique, tally.duplicates), (20, 0), "log:\n{}", bridge.log());
    assert!(bridge.log().contains("durable consumer rmc is gone"), "{}", bridge.log());
    bridge.kill9();
    server.kill9();
}

/// JetStream -> shmq: a message larger than the queue takes waits (never dropped) with its
/// counters file kept fresh, and once it is removed from the stream, the bridge acks it and
/// goes on. (Before, it retried its own copy forever, and the counters file froze.)
#[test]
fn a_message_too_large_for_the_queue_is_passed_once_removed_from_the_stream() {
    let Setup { _serial, dir, mut server, q, subject, stream: stream_name } =
        setup("toolarge", Options::new().capacity(64 << 10).max_message(1024));
    let rt = runtime();
    let (js, big_seq) = rt.block_on(async {
        let js = make_stream(&server, &stream_name, &subject).await;
        let mut big = 0;
        for (seq, len) in [(0u64, 16usize), (1, 2000), (2, 16)] {
            let ack = js.publish(subject.clone(), payload(seq, len).into()).await.expect("publish").await.expect("ack");
            if len > 16 {
                big = ack.sequence;
            }
        }
        (js, big)
    });
    let mut bridge = Bridge::start(&dir.0, from_nats_args(&subject, &q.0, &stream_name, &server, &dir.0, &[]));
    let mut rx = Consumer::open(&q.0).expect("open the consumer");
    let m = rx.recv_timeout(PHASE).expect("the first message");
    assert_eq!(seq_of(&m), 0);
    drop(m);
    wait_for("the bridge to say the message cannot go", || bridge.log().contains("cannot go to queue"));
    let updated = stat(&dir.0, "updated_unix_ms");
    wait_for("a fresher counters file while it waits", || stat(&dir.0, "updated_unix_ms") > updated);
    wait_for("the failures counted in the counters file", || stat(&dir.0, "errors") >= 1);
    assert!(matches!(rx.try_recv(), Ok(None)), "nothing passes the message that waits");
    rt.block_on(async {
        let st = js.get_stream(&stream_name).await.expect("the stream");
        st.delete_message(big_seq).await.expect("remove the message from the stream");
    });
    let m = rx.recv_timeout(PHASE).expect("the message after the removed one");
    assert_eq!(seq_of(&m), 2);
    drop(m);
    assert!(bridge.log().contains("was removed from the stream"), "{}", bridge.log());
    let status = bridge.signal_and_wait("INT");
    assert!(status.success(), "exit on SIGINT: {status:?}");
    server.kill9();
}

/// shmq -> JetStream: the stream deleted while the bridge runs is made again (as a bridge
/// starting now would make it), and the messages sent after the deletion are stored in it,
/// each once. Before, every publish failed with "no stream found for given subject" and the
/// bridge published them again every second, forever.
#[test]
fn a_stream_deleted_while_the_bridge_runs_is_made_again_and_later_messages_are_stored_once() {
    let Setup { _serial, dir, mut server, q, subject, stream: stream_name } =
        setup("rmstream", Options::new().capacity(64 << 10).max_message(1024));
    let mut tx = Producer::open(&q.0).expect("open the producer");
    let send = |tx: &mut Producer, seqs: std::ops::Range<u64>| {
        for seq in seqs {
            tx.send(&payload(seq, 16)).expect("send");
        }
    };
    send(&mut tx, 0..10);
    let mut bridge = Bridge::start(&dir.0, to_nats_args(&q.0, &subject, &stream_name, &server, &dir.0));
    wait_for("the first 10 forwarded", || stat(&dir.0, "forwarded") >= 10);
    runtime().block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        jetstream::new(client).delete_stream(&stream_name).await.expect("delete the stream");
    });
    send(&mut tx, 10..20);
    wait_for("the bridge to release every message (an empty queue)", || {
        Queue::inspect(&q.0).expect("inspect").used_bytes == 0
    });
    let tally = read_stream(&server, &stream_name, 20);
    assert_eq!((tally.unique, tally.duplicates), (10, 0), "the new stream; log:\n{}", bridge.log());
    assert_eq!(tally.missing(), (0..10).collect::<Vec<_>>(), "the new stream holds the messages 10-19");
    assert!(bridge.log().contains("no stream captures subject"), "{}", bridge.log());
    wait_for("20 forwarded in the counters file", || stat(&dir.0, "forwarded") == 20);
    bridge.kill9();
    server.kill9();
}

/// At start: a wildcard `--to-subject` is refused (NATS takes no publish to one: every message
/// was tried again forever). While no server answers, the counters file is written and kept
/// fresh, saying `connected: false` (before, there was none until a server answered, and then
/// it said `true` from the start). A server started later is found: the bridge makes the
/// stream and forwards. SIGTERM ends it with exit 0.
#[test]
fn a_wildcard_subject_is_refused_and_the_counters_file_is_kept_while_no_server_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("noserver");
    let q = TestQueue::create("noserver", Options::new().capacity(64 << 10).max_message(1024));
    let bin = env!("CARGO_BIN_EXE_shmq-bridge");
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}"); // nobody listens there yet
    for subject in ["orders.*", "orders.>", "orders..in"] {
        // Bounded: a bridge that took the subject would wait for a server for good.
        let out = Command::new("timeout")
            .args([
                "30",
                bin,
                "--from-queue",
                &q.0,
                "--to-subject",
                subject,
                "--stream",
                "NOSERVER",
                "--nats-url",
                &url,
            ])
            .output()
            .expect("run shmq-bridge");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--to-subject {subject}: {stderr}");
        assert!(stderr.contains("invalid subject"), "--to-subject {subject}: {stderr}");
    }
    let stats = dir.0.join("stats.json");
    let args = ["--from-queue", &q.0, "--to-subject", "shmqtest.noserver", "--stream", "NOSERVER", "--nats-url", &url];
    let mut args: Vec<String> = args.map(str::to_owned).to_vec();
    args.extend(["--stats-file".to_owned(), stats.display().to_string()]);
    let mut bridge = Bridge::start(&dir.0, args);
    wait_for("a counters file", || stats.exists());
    let updated = stat(&dir.0, "updated_unix_ms");
    wait_for("a fresher counters file", || stat(&dir.0, "updated_unix_ms") > updated);
    let connected = || {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        v["connected"].as_bool().expect("a `connected` field")
    };
    assert!(!connected(), "connected, with no server");
    let mut server = Server { port, dir: dir.0.clone(), proc: Proc(None), config: None };
    server.restart();
    Producer::open(&q.0).expect("open the producer").send(&payload(0, 16)).expect("send");
    wait_for("the message forwarded", || stat(&dir.0, "forwarded") == 1);
    assert!(connected(), "not connected, with a server; log:\n{}", bridge.log());
    let status = bridge.signal_and_wait("TERM");
    assert!(status.success(), "exit on SIGTERM: {status:?}; log:\n{}", bridge.log());
    let tally = read_stream(&server, "NOSERVER", 1);
    assert_eq!((tally.unique, tally.duplicates), (1, 0));
    server.kill9();
}
