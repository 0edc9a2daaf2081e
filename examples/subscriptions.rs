//! Subscriptions in five processes: one producer, two fan-out subscriptions that each get
//! every message, and one subscription whose two members share the work.
//!
//! ```text
//! cargo run --example subscriptions -- demo          # starts the other roles itself, prints what each got
//! ```
//!
//! The demo creates a queue with three subscriptions, `audit`, `metrics` and `work`, and
//! removes the queue's default subscription (nobody reads it here, and producers would wait
//! for it). It then starts copies of itself: a subscriber on `audit`, one on `metrics`, two
//! members of `work`, and a producer that sends `event 0` … `event N-1` and a last message
//! `end N`. Each subscriber receives every message in order; the two members split them,
//! each message going to exactly one of them. When `work` has no message left, the demo
//! removes that subscription (its members get `Closed` and report), checks what everybody
//! got, removes the queue and exits with 0.
//!
//! The same roles by hand, in separate terminals (every receiving role may start before or
//! after the producer, once `setup` has run):
//!
//! ```text
//! cargo run --example subscriptions -- setup --queue events
//! cargo run --example subscriptions -- subscriber --queue events --subscription audit
//! cargo run --example subscriptions -- subscriber --queue events --subscription metrics
//! cargo run --example subscriptions -- member --queue events --subscription work --slow-us 1000
//! cargo run --example subscriptions -- member --queue events --subscription work --slow-us 1000
//! cargo run --example subscriptions -- producer --queue events --count 10000
//! cargo run --example subscriptions -- teardown --queue events
//! ```
//!
//! `kill -9` one of the two members while they work: the batch it held (up to 16 messages,
//! those it had received included) goes to the other one, which counts them as delivered
//! again (`Message::delivery_count() >= 2`). `kill -STOP` one instead: it keeps its batch (a
//! stopped process is alive) and the other member goes on with the rest, until the producer
//! comes round the ring to the stopped member's batch and waits for it (`kill -CONT`).
//!
//! | flag | roles | default | meaning |
//! | --- | --- | --- | --- |
//! | `--queue NAME` | all | `events` (`demo`: `subs-demo-<pid>`) | queue name |
//! | `--count N` | `demo`, `producer` | `1000` | messages to send |
//! | `--capacity BYTES` | `demo`, `setup` | `65536` | ring size, a power of two from 1024 |
//! | `--lag-limit BYTES` | `demo`, `setup` | none | lag limit of `metrics` (see below) |
//! | `--subscription NAME` | `subscriber`, `member` | `audit` / `work` | the subscription to read |
//! | `--slow-us N` | `subscriber`, `member` | `0` | sleep this long after each message |
//! | `--after-sent N` | `subscriber` | `0` | read nothing until the queue has carried N messages |
//! | `--timeout-ms N` | `subscriber`, `member`, `teardown` | none: wait forever | give up after N ms without a message |
//!
//! With `--lag-limit`, `metrics` no longer holds the producer back: in
//! `demo --lag-limit 4096 --count 5000` its subscriber starts reading only once everything
//! was sent, finds that it was lapped (`Error::Lapped`, with the bytes it missed) and has
//! nothing left to read: producers went on without it.
//!
//! Exit status: 0 when every check passed, 1 otherwise, 2 for a bad flag.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmq::{Consumer, Error, Options, Producer, Queue, Subscription, SubscriptionOptions};

/// The subscriptions `setup` creates.
const FAN_OUT: [&str; 2] = ["audit", "metrics"];
const SHARED: &str = "work";

/// Longest the demo waits for a child or for `work` to drain.
const DEADLINE: Duration = Duration::from_secs(120);

struct Args {
    role: String,
    queue: Option<String>,
    count: u64,
    capacity: u64,
    lag_limit: Option<u64>,
    subscription: Option<String>,
    slow: Duration,
    after_sent: u64,
    timeout: Option<Duration>,
    /// `member`: also print every event number received (the demo checks them).
    list: bool,
}

const USAGE: &str = "usage: subscriptions demo|setup|producer|subscriber|member|teardown [--queue NAME] [--count N] \
                     [--capacity BYTES] [--lag-limit BYTES] [--subscription NAME] [--slow-us N] [--after-sent N] \
                     [--timeout-ms N] [--list]";

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let role = it.next().ok_or(USAGE)?;
    if !["demo", "setup", "producer", "subscriber", "member", "teardown"].contains(&role.as_str()) {
        return Err(format!("unknown role {role:?}\n{USAGE}"));
    }
    let mut a = Args {
        role,
        queue: None,
        count: 1000,
        capacity: 64 << 10,
        lag_limit: None,
        subscription: None,
        slow: Duration::ZERO,
        after_sent: 0,
        timeout: None,
        list: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--list" => {
                a.list = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--queue" => a.queue = Some(value),
            "--count" => a.count = number(&value)?,
            "--capacity" => a.capacity = number(&value)?,
            "--lag-limit" => a.lag_limit = Some(number(&value)?),
            "--subscription" => a.subscription = Some(value),
            "--slow-us" => a.slow = Duration::from_micros(number(&value)?),
            "--after-sent" => a.after_sent = number(&value)?,
            "--timeout-ms" => a.timeout = Some(Duration::from_millis(number(&value)?)),
            _ => return Err(format!("unknown flag {flag:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

impl Args {
    fn queue(&self) -> String {
        match &self.queue {
            Some(q) => q.clone(),
            None if self.role == "demo" => format!("subs-demo-{}", std::process::id()),
            None => "events".into(),
        }
    }
}

/// Creates the queue and its subscriptions, and removes the default subscription.
fn setup(q: &str, capacity: u64, lag_limit: Option<u64>) -> Res<()> {
    Queue::create(q, Options::new().capacity(capacity).max_message(256))?;
    // A subscription sees what is sent after it was created: create them before producing.
    Subscription::create(q, "audit", SubscriptionOptions::new())?;
    Subscription::create(q, "metrics", SubscriptionOptions::new().lag_limit(lag_limit))?;
    Subscription::create(q, SHARED, SubscriptionOptions::new())?;
    // Every queue has a default subscription, read by `Consumer::open`. Nobody reads it
    // here, and producers would wait for it once the ring is full: remove it.
    Subscription::remove(q, Subscription::DEFAULT)?;
    let names: Vec<String> = Subscription::list(q)?.into_iter().map(|s| s.name).collect();
    println!("setup: queue {q:?} with subscriptions {names:?}");
    Ok(())
}

fn producer(q: &str, count: u64) -> Res<()> {
    let mut tx = Producer::open(q)?;
    for i in 0..count {
        tx.send(format!("event {i}").as_bytes())?; // waits for the slowest subscription without a lag limit
    }
    tx.send(format!("end {count}").as_bytes())?;
    println!("producer: sent {count} events and an end marker");
    Ok(())
}

/// A message of the producer: `Some(n)` for `event n`, `None` for `end N`.
enum Event {
    Number(u64),
    End(u64),
}

fn decode(msg: &[u8]) -> Res<Event> {
    let text = std::str::from_utf8(msg)?;
    let number = |s: &str| s.parse::<u64>().map_err(|_| format!("unexpected message {text:?}"));
    if let Some(n) = text.strip_prefix("event ") {
        Ok(Event::Number(number(n)?))
    } else if let Some(n) = text.strip_prefix("end ") {
        Ok(Event::End(number(n)?))
    } else {
        Err(format!("unexpected message {text:?}").into())
    }
}

/// Receives with the role's timeout.
fn receive(rx: &mut Consumer, timeout: Option<Duration>) -> shmq::Result<shmq::Message<'_>> {
    match timeout {
        None => rx.recv(),
        Some(t) => rx.recv_timeout(t),
    }
}

/// The only member of a subscription of its own: gets every message, in order, until the
/// end marker (or `Closed`, once the subscription or the queue was removed).
fn subscriber(q: &str, name: &str, a: &Args) -> Res<()> {
    let mut rx = Consumer::subscribe(q, name)?;
    if a.after_sent > 0 {
        // Fall behind on purpose: read nothing until the queue has carried that many.
        let start = Instant::now();
        while Queue::inspect(q)?.sent.messages < a.after_sent {
            if a.timeout.is_some_and(|t| start.elapsed() > t) {
                return Err(format!("fewer than {} messages sent", a.after_sent).into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (mut received, mut lapped, mut missed_bytes) = (0u64, 0u64, 0u64);
    let mut next: Option<u64> = Some(0); // the number expected next; None after a lap
    let mut ids: Option<(u64, u64)> = None;
    let mut end = None;
    loop {
        let msg = match receive(&mut rx, a.timeout) {
            Ok(m) => m,
            Err(Error::Lapped { missed_bytes: n }) => {
                // Producers went on without us; we are back at their position.
                lapped += 1;
                missed_bytes += n;
                next = None;
                continue;
            }
            Err(Error::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        let id = msg.id(); // the same for this message in every subscription
        if ids.is_some_and(|(_, last)| last >= id) {
            return Err(format!("{name}: id {id} after id {:?}", ids.map(|(_, last)| last)).into());
        }
        ids = Some((ids.map_or(id, |(first, _)| first), id));
        match decode(&msg)? {
            Event::Number(n) => {
                if next.is_some_and(|x| x != n) {
                    return Err(format!("{name}: expected event {next:?}, got event {n}").into());
                }
                received += 1;
                next = Some(n + 1);
            }
            Event::End(n) => {
                end = Some(n);
                break;
            }
        }
        drop(msg);
        std::thread::sleep(a.slow);
    }
    match end {
        // Not lapped: everything arrived. Lapped: what came is a gapless tail.
        Some(n) if lapped == 0 && received != n => {
            return Err(format!("{name}: {received} events of {n}").into());
        }
        None if lapped == 0 => return Err(format!("{name}: closed before the end marker").into()),
        _ => {}
    }
    print!("subscriber {name:?}: {received} events, in order");
    if let Some((first, last)) = ids {
        print!(", ids {first}..={last}");
    }
    if lapped > 0 {
        print!("; lapped {lapped} time(s), missed {missed_bytes} bytes");
    }
    println!();
    Ok(())
}

/// One of the members sharing a subscription: receives until `Closed` (the demo removes the
/// subscription once it is drained).
fn member(q: &str, name: &str, a: &Args) -> Res<()> {
    let mut rx = Consumer::subscribe(q, name)?;
    let mut numbers = Vec::new();
    let mut again = 0u64;
    loop {
        let msg = match receive(&mut rx, a.timeout) {
            Ok(m) => m,
            Err(Error::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        if msg.delivery_count() > 1 {
            again += 1; // a member died holding it: it may have been processed already
        }
        if let Event::Number(n) = decode(&msg)? {
            numbers.push(n);
        }
        drop(msg);
        std::thread::sleep(a.slow);
    }
    println!("member {} of {name:?}: {} events ({again} delivered again)", std::process::id(), numbers.len());
    if a.list {
        let list: Vec<String> = numbers.iter().map(u64::to_string).collect();
        println!("numbers: {}", list.join(" "));
    }
    Ok(())
}

/// Waits until subscription `name` holds nothing (every message received and released, and
/// not detached), then removes it: its members' next receive returns `Closed`.
fn drain_and_remove(q: &str, name: &str, deadline: Option<Instant>) -> Res<()> {
    loop {
        match Subscription::list(q)?.into_iter().find(|s| s.name == name) {
            Some(s) if s.lag_bytes > 0 || s.detached => {}
            Some(_) => break,
            None => return Ok(()), // removed already
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(format!("{name:?} still holds messages").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    match Subscription::remove(q, name) {
        Ok(()) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `work` once it is drained (its members get `Closed`), then the queue.
fn teardown(q: &str, timeout: Option<Duration>) -> Res<()> {
    drain_and_remove(q, SHARED, timeout.map(|t| Instant::now() + t))?;
    Queue::remove(q)?;
    println!("teardown: removed {SHARED:?} and the queue {q:?}");
    Ok(())
}

/// A copy of this program in a role, killed if it is still running when dropped (when the
/// demo fails half-way).
struct Role {
    what: String,
    child: Child,
    /// Reads its stdout as it comes, so that a long output never blocks the child.
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Role {
    fn spawn(what: &str, role: &str, args: &[&str]) -> Res<Role> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe).arg(role).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let mut pipe = child.stdout.take().ok_or("no stdout pipe")?;
        let stdout = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
            out
        });
        Ok(Role { what: what.into(), child, stdout: Some(stdout) })
    }

    /// Waits for it to exit (at most until `deadline`) and returns its output.
    fn finish(mut self, deadline: Instant) -> Res<String> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not finish in time", self.what).into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = self.stdout.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        if !status.success() {
            return Err(format!("{} failed ({status})", self.what).into());
        }
        Ok(out)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn demo(q: &str, a: &Args) -> Res<()> {
    let result = setup(q, a.capacity, a.lag_limit).and_then(|()| run_demo(q, a));
    // The queue is ours unless creating it found another one of that name.
    let exists = result.as_ref().err().and_then(|e| e.downcast_ref::<Error>());
    if !matches!(exists, Some(Error::Exists(_))) {
        let _ = Queue::remove(q); // also when a step failed
    }
    result
}

fn run_demo(q: &str, a: &Args) -> Res<()> {
    let deadline = Instant::now() + DEADLINE;
    let lapping = a.lag_limit.is_some();
    let (count, after, timeout) = (a.count.to_string(), (a.count + 1).to_string(), DEADLINE.as_millis().to_string());
    let common = ["--queue", q, "--timeout-ms", &timeout];
    let mut subscribers = Vec::new();
    for name in FAN_OUT {
        let mut args = common.to_vec();
        args.extend(["--subscription", name]);
        if name == "metrics" && lapping {
            args.extend(["--after-sent", &after]); // fall behind on purpose, to be lapped
        }
        subscribers.push((name, Role::spawn(&format!("subscriber {name}"), "subscriber", &args)?));
    }
    let mut members = Vec::new();
    for i in 1..=2 {
        let mut args = common.to_vec();
        args.extend(["--subscription", SHARED, "--list"]);
        members.push(Role::spawn(&format!("member {i}"), "member", &args)?);
    }
    let producer = Role::spawn("producer", "producer", &["--queue", q, "--count", &count])?;
    print!("{}", producer.finish(deadline)?);

    // `audit` (and `metrics`, unless it is lapped) end at the end marker. A lapped `metrics`
    // has rejoined at the producers' position, after the marker: removing the subscription
    // ends it. So does removing `work` for its members, once they received everything.
    if lapping {
        drain_and_remove(q, "metrics", Some(deadline))?;
    }
    let mut ids = BTreeMap::new();
    for (name, child) in subscribers {
        let out = child.finish(deadline)?;
        print!("{out}");
        let range = out.split(", ids ").nth(1).and_then(|s| s.split(';').next()).map(|s| s.trim().to_string());
        ids.insert(name, range);
    }
    drain_and_remove(q, SHARED, Some(deadline))?;
    let mut seen = vec![0u32; a.count as usize];
    for member in members {
        let what = member.what.clone();
        for line in member.finish(deadline)?.lines() {
            let Some(list) = line.strip_prefix("numbers:") else {
                println!("{line}");
                continue;
            };
            for n in list.split_whitespace() {
                let n: usize = n.parse()?;
                *seen.get_mut(n).ok_or(format!("{what}: event {n} was never sent"))? += 1;
            }
        }
    }

    // The members got every event exactly once between them; the two fan-out subscriptions
    // saw the same messages under the same ids (unless `metrics` was lapped).
    if let Some(n) = seen.iter().position(|&k| k != 1) {
        return Err(format!("{SHARED}: event {n} was received {} times", seen[n]).into());
    }
    println!("{SHARED}: its 2 members received the {} events between them, each exactly once", a.count);
    if !lapping {
        let (audit, metrics) = (&ids["audit"], &ids["metrics"]);
        if audit != metrics || audit.is_none() {
            return Err(format!("audit saw ids {audit:?}, metrics {metrics:?}").into());
        }
        println!("audit and metrics: every event, under the same ids {}", audit.as_deref().unwrap_or(""));
    }
    Ok(())
}

fn run(a: &Args) -> Res<()> {
    let q = a.queue();
    let subscription = |default: &str| a.subscription.clone().unwrap_or_else(|| default.into());
    match a.role.as_str() {
        "demo" => demo(&q, a),
        "setup" => setup(&q, a.capacity, a.lag_limit),
        "producer" => producer(&q, a.count),
        "subscriber" => subscriber(&q, &subscription("audit"), a),
        "member" => member(&q, &subscription(SHARED), a),
        "teardown" => teardown(&q, a.timeout),
        _ => unreachable!("parse checks the role"),
    }
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
            eprintln!("subscriptions {}: {e}", args.role);
            ExitCode::FAILURE
        }
    }
}
