//! `shmq bench --fanout`: what subscriptions cost, measured between real processes.
//!
//! # Method
//! * One producer (this process, the *leader*) and up to four *members*: the same binary
//!   re-executed as `shmq bench-peer`, each joining the queue as a consumer. Nothing is
//!   pinned: with more processes than CPUs the scheduler places them, and every side waits
//!   with `Wait::Block` (spinning processes would measure the scheduler, not the queue).
//! * Four cases, run interleaved in rounds (A B C D A B C D ...) at each size:
//!   - `baseline`: the default subscription, read by one `Consumer::open` (today's queue);
//!   - `fanout4`: four subscriptions with one member each (the default one removed), every
//!     message goes to all four;
//!   - `members1`, `members2`: one subscription with one, then two members sharing it.
//! * One stream per run: the leader sends `M` numbered messages (the sequence number in the
//!   first 8 bytes, then a fixed pattern), then end markers. A member copies each message
//!   out, checks its pattern and that its sequence numbers only grow, and on its first end
//!   marker reports how many messages it received and the sum and the sum of squares of
//!   their sequence numbers. The leader checks that every subscription got exactly `0..M`
//!   (count, sum and sum of squares over its members), so no case can measure something
//!   easier than delivering everything.
//! * Rates: *delivered* msgs/s = `M` / time from the first send until every member has
//!   reported (every subscription has every message); *sent* msgs/s = `M` / time until the
//!   producer's last send returned (the producer's own view: it is ahead by at most a ring).
//! * The queue's statistics counters, read after each stream, give the futex calls per
//!   1000 messages: the producer's waits and wakes, the members' waits (over all members).
//! * Ratios within each round, median over rounds: `fanout4 / baseline` (target >= 0.6 at
//!   64 B) and `members2 / members1` (target >= 0.8).
//!
//! End markers: a member that took its first marker keeps receiving (and reports each
//! further marker as `extra`, which makes the leader send another), so with two members
//! sharing a subscription the markers reach both whatever batches they claim. Once all have
//! reported, the leader removes the queue and each member ends with `Closed`.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use shmq::{Consumer, Producer, Queue, Subscription, SubscriptionOptions};

use super::peer::Control;
use super::report::{self, Machine};
use super::transports::{QueueGuard, queue_capacity, queue_options};
use super::{Config, Kind, Peer, RunSpec, STUCK, WaitKind, allowed_cpus, check, count_for, pattern, size_label, stamp};

/// What a member joins: sent to a peer in [`RunSpec::member`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberSpec {
    /// The queue.
    pub queue: String,
    /// The subscription to join with `Consumer::subscribe_with`; `None`: the default one,
    /// through `Consumer::open_with`.
    pub subscription: Option<String>,
}

/// Sequence number of an end marker.
const END: u64 = u64::MAX;
/// Most messages a member takes per `recv_batch` call.
const RECV_BATCH: usize = 1024;
/// Most `extra` end markers a run may need before the bench gives up (a member that never
/// gets one while another keeps taking them).
const MAX_EXTRA: u64 = 10_000;
/// Smallest message: the whole sequence number must fit.
pub const MIN_SIZE: usize = 8;

/// One measured case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// One producer, the default subscription's consumer.
    Baseline,
    /// One producer, four subscriptions of one member each.
    Fanout4,
    /// One producer, one subscription with one member.
    Members1,
    /// One producer, one subscription with two members.
    Members2,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 4] = [Case::Baseline, Case::Fanout4, Case::Members1, Case::Members2];

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Case::Baseline => "baseline",
            Case::Fanout4 => "fanout4",
            Case::Members1 => "members1",
            Case::Members2 => "members2",
        }
    }

    /// Subscriptions the producer feeds.
    pub fn subscriptions(self) -> usize {
        match self {
            Case::Fanout4 => 4,
            _ => 1,
        }
    }

    /// Members of each subscription.
    pub fn members_per_subscription(self) -> usize {
        match self {
            Case::Members2 => 2,
            _ => 1,
        }
    }

    /// Member processes.
    pub fn members(self) -> usize {
        self.subscriptions() * self.members_per_subscription()
    }

    /// What it is, for the table.
    fn describe(self) -> &'static str {
        match self {
            Case::Baseline => "default consumer (Consumer::open)",
            Case::Fanout4 => "4 subscriptions x 1 member",
            Case::Members1 => "1 subscription x 1 member",
            Case::Members2 => "1 subscription x 2 members",
        }
    }
}

/// What a member saw: how many data messages, and the sum and sum of squares (both
/// wrapping) of their sequence numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) sum: u64,
    pub(super) sum_sq: u64,
}

impl Tally {
    pub(super) fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        self.sum_sq = self.sum_sq.wrapping_add(seq.wrapping_mul(seq));
    }

    fn merge(&mut self, o: Tally) {
        self.count += o.count;
        self.sum = self.sum.wrapping_add(o.sum);
        self.sum_sq = self.sum_sq.wrapping_add(o.sum_sq);
    }

    /// The tally of exactly the sequence numbers `0..m`.
    pub(super) fn of_all(m: u64) -> Tally {
        let n = u128::from(m);
        let sum = n * n.saturating_sub(1) / 2;
        let sum_sq = if n == 0 { 0 } else { (n - 1) * n * (2 * n - 1) / 6 };
        // The exact sums modulo 2^64: what wrapping additions give.
        Tally { count: m, sum: sum as u64, sum_sq: sum_sq as u64 }
    }

    pub(super) fn parse(words: &str) -> Option<Tally> {
        let mut it = words.split_whitespace().map(str::parse::<u64>);
        let t = Tally { count: it.next()?.ok()?, sum: it.next()?.ok()?, sum_sq: it.next()?.ok()? };
        it.next().is_none().then_some(t)
    }
}

/// The member's side of one run (in the peer process): joins, says `ready`, takes `stream M`,
/// receives until the queue is removed, reporting `stopped COUNT SUM SUMSQ` at its first end
/// marker and `extra` at each later one, and `closed` at the end.
pub fn serve_member<R: BufRead, W: Write>(ctl: &mut Control<R, W>, spec: &RunSpec, m: &MemberSpec) -> Result<()> {
    if spec.size < MIN_SIZE {
        bail!("messages of {} bytes cannot carry a sequence number", spec.size);
    }
    let wait = spec.config.wait.to_shmq();
    let mut rx = match &m.subscription {
        None => Consumer::open_with(&m.queue, wait).with_context(|| format!("open the consumer of {:?}", m.queue))?,
        Some(s) => Consumer::subscribe_with(&m.queue, s, wait)
            .with_context(|| format!("join subscription {s:?} of {:?}", m.queue))?,
    };
    ctl.say("ready")?;
    let line = ctl.hear()?;
    let total: u64 = line
        .strip_prefix("stream ")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow!("unexpected {line:?} from the leader"))?;
    let pat = pattern(spec.size);
    let mut out = vec![0u8; spec.size];
    let mut tally = Tally::default();
    let mut last: Option<u64> = None;
    let mut stopped = false;
    loop {
        let mut ends = 0u64;
        let mut bad: Option<String> = None;
        let r = rx.recv_batch(RECV_BATCH, |msg| {
            if bad.is_some() {
                return;
            }
            if msg.len() != out.len() {
                bad = Some(format!("a message of {} bytes, expected {}", msg.len(), out.len()));
                return;
            }
            // Copied out and checked, like every transport of the bench.
            out.copy_from_slice(msg);
            let mut word = [0u8; 8];
            word.copy_from_slice(&out[..8]);
            let seq = u64::from_le_bytes(word);
            if !check(&out, seq, &pat) {
                bad = Some(format!("message {seq} arrived corrupted"));
            } else if seq == END {
                ends += 1;
            } else if stopped || ends > 0 {
                bad = Some(format!("message {seq} arrived after the end marker"));
            } else if seq >= total {
                bad = Some(format!("message {seq} of a stream of {total}"));
            } else if last.is_some_and(|l| seq <= l) {
                bad = Some(format!("message {seq} arrived after message {}", last.unwrap_or(0)));
            } else {
                last = Some(seq);
                tally.add(seq);
            }
        });
        match r {
            Ok(_) => {}
            Err(shmq::Error::Closed) => break,
            Err(e) => return Err(anyhow::Error::from(e).context("receive")),
        }
        if let Some(b) = bad {
            bail!(b);
        }
        for _ in 0..ends {
            if stopped {
                ctl.say("extra")?;
            } else {
                stopped = true;
                ctl.say(&format!("stopped {} {} {}", tally.count, tally.sum, tally.sum_sq))?;
            }
        }
    }
    ctl.say("closed")
}

/// How long one run took.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Messages streamed.
    pub messages: u64,
    /// Until the last send returned.
    pub sent: Duration,
    /// Until every member had reported all it received.
    pub delivered: Duration,
    /// The queue's futex calls during the run, from its counters.
    pub futex: Futex,
}

/// Futex calls of a run (the queue's statistics counters, read after the stream).
#[derive(Clone, Copy, Debug, Default)]
pub struct Futex {
    /// The producer's `FUTEX_WAIT` calls (it found the ring full).
    pub producer_waits: u64,
    /// The producer's `FUTEX_WAKE` calls.
    pub producer_wakes: u64,
    /// The members' `FUTEX_WAIT` calls, over all members.
    pub member_waits: u64,
}

impl Futex {
    /// The counters of queue `q`: its producers', and its readers' (the default consumer's
    /// and every subscription's members').
    fn read(q: &str) -> Result<Futex> {
        let snap = Queue::inspect(q).with_context(|| format!("inspect {q:?}"))?;
        let member_waits =
            snap.received.wait_calls + snap.subscriptions.iter().map(|s| s.received.wait_calls).sum::<u64>();
        Ok(Futex { producer_waits: snap.sent.wait_calls, producer_wakes: snap.sent.wake_calls, member_waits })
    }
}

impl Timing {
    fn sent_rate(&self) -> f64 {
        self.messages as f64 / self.sent.as_secs_f64().max(1e-12)
    }

    fn delivered_rate(&self) -> f64 {
        self.messages as f64 / self.delivered.as_secs_f64().max(1e-12)
    }
}

/// A line from member `i`'s control pipe.
type Heard = (usize, Result<String>);

/// One run of `case` at `size` with `count` messages: sets up the queue and its
/// subscriptions, has the members join, streams, checks, tears down.
fn run_case(peers: &mut [Peer], case: Case, size: usize, count: u64, id: u64) -> Result<Timing> {
    let q = format!("bench-{}-f{id}", std::process::id());
    Queue::create(&q, queue_options(size)).with_context(|| format!("create queue {q:?}"))?;
    let guard = QueueGuard::new(vec![q.clone()]);
    let subs: Vec<Option<String>> = match case {
        Case::Baseline => vec![None],
        _ => {
            let names: Vec<String> = (0..case.subscriptions()).map(|j| format!("s{j}")).collect();
            for n in &names {
                Subscription::create(&q, n, SubscriptionOptions::new())
                    .with_context(|| format!("create subscription {n:?} of {q:?}"))?;
            }
            // Nobody reads the default subscription here: without this the producer would
            // wait for it once the ring is full.
            Subscription::remove(&q, Subscription::DEFAULT)
                .with_context(|| format!("remove the default subscription of {q:?}"))?;
            names.into_iter().map(Some).collect()
        }
    };
    let k = case.members();
    let per = case.members_per_subscription();
    let config = Config { kind: Kind::Shmq, wait: WaitKind::Block };
    for (i, p) in peers[..k].iter_mut().enumerate() {
        let spec = RunSpec {
            config,
            size,
            warmup: 0,
            resource: q.clone(),
            member: Some(MemberSpec { queue: q.clone(), subscription: subs[i / per].clone() }),
            durable: None,
            libshmq: None,
        };
        p.say(&format!("run {}", serde_json::to_string(&spec)?))?;
        p.expect("ready")?;
    }
    let mut tx = Producer::open_with(&q, shmq::Wait::Block).context("open the producer")?;
    for p in peers[..k].iter_mut() {
        p.say(&format!("stream {count}"))?;
    }
    let pids: Vec<_> = peers[..k].iter().map(|p| p.pid).collect();
    std::thread::scope(|s| {
        // One reader per member: the leader waits on whichever speaks first.
        let (to_leader, heard) = mpsc::channel::<Heard>();
        for (i, p) in peers[..k].iter_mut().enumerate() {
            let to_leader = to_leader.clone();
            s.spawn(move || {
                loop {
                    let r = p.hear();
                    let last = !matches!(&r, Ok(l) if l != "closed");
                    if to_leader.send((i, r)).is_err() || last {
                        break;
                    }
                }
            });
        }
        drop(to_leader);
        let result =
            stream(&mut tx, &heard, case, size, count).and_then(|t| Ok(Timing { futex: Futex::read(&q)?, ..t }));
        drop(tx);
        // Removing the queue ends every member's receive with `Closed` (after what is left).
        drop(guard);
        let closed = result.as_ref().ok().map(|_| wait_closed(&heard, k));
        if !matches!(closed, Some(Ok(()))) {
            // Failed: stop the members so that their readers end (the bench stops here).
            for &pid in &pids {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let t = result?;
        closed.unwrap_or(Ok(()))?;
        Ok(t)
    })
}

/// The leader's stream: `count` messages, end markers, then the members' reports.
fn stream(tx: &mut Producer, heard: &mpsc::Receiver<Heard>, case: Case, size: usize, count: u64) -> Result<Timing> {
    let pat = pattern(size);
    let mut msg = pat.clone();
    let k = case.members();
    let t0 = Instant::now();
    for i in 0..count {
        stamp(&mut msg, i);
        tx.send_timeout(&msg, STUCK).with_context(|| format!("send message {i}"))?;
    }
    let sent = t0.elapsed();
    stamp(&mut msg, END);
    // One end marker per member of a subscription: each subscription sees every message,
    // so each of its members can take one.
    for _ in 0..case.members_per_subscription() {
        tx.send_timeout(&msg, STUCK).context("send an end marker")?;
    }
    let mut tallies: Vec<Option<Tally>> = vec![None; k];
    let (mut left, mut extra) = (k, 0u64);
    while left > 0 {
        let (i, line) =
            heard.recv_timeout(STUCK).map_err(|_| anyhow!("no member reported within {} s", STUCK.as_secs()))?;
        let line = line.with_context(|| format!("member {i}"))?;
        if line == "extra" {
            // A member took more than one marker: another member still needs one.
            extra += 1;
            if extra > MAX_EXTRA {
                bail!("{MAX_EXTRA} end markers sent, and a member has still not received one");
            }
            tx.send_timeout(&msg, STUCK).context("send an end marker")?;
        } else if let Some(words) = line.strip_prefix("stopped ") {
            let t = Tally::parse(words).ok_or_else(|| anyhow!("member {i} said {line:?}"))?;
            if tallies[i].replace(t).is_some() {
                bail!("member {i} stopped twice");
            }
            left -= 1;
        } else {
            bail!("member {i} said {line:?}");
        }
    }
    let delivered = t0.elapsed();
    // Every subscription, over its members, received each of 0..count exactly once.
    let want = Tally::of_all(count);
    let per = case.members_per_subscription();
    for (j, members) in tallies.chunks(per).enumerate() {
        let mut got = Tally::default();
        for t in members.iter().flatten() {
            got.merge(*t);
        }
        if got != want {
            bail!(
                "{}: subscription {j} received {} of {count} messages (or not each once: sums {} {} against {} {})",
                case.name(),
                got.count,
                got.sum,
                got.sum_sq,
                want.sum,
                want.sum_sq
            );
        }
    }
    Ok(Timing { messages: count, sent, delivered, futex: Futex::default() })
}

/// Waits for every member's `closed` (it may report `extra` markers first).
fn wait_closed(heard: &mpsc::Receiver<Heard>, k: usize) -> Result<()> {
    let mut left = k;
    while left > 0 {
        let (i, line) = heard
            .recv_timeout(STUCK)
            .map_err(|_| anyhow!("a member did not end within {} s of the queue's removal", STUCK.as_secs()))?;
        match line.with_context(|| format!("member {i}"))?.as_str() {
            "closed" => left -= 1,
            "extra" => {}
            other => bail!("member {i} said {other:?} at the end"),
        }
    }
    Ok(())
}

/// `shmq bench --fanout` options, from [`super::BenchArgs`].
pub struct Plan {
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Rounds.
    pub rounds: u32,
    /// Time for the stream of one run.
    pub budget: Duration,
    /// Messages per run instead of the time budget.
    pub fixed: Option<u64>,
    /// Unrecorded messages per case and size before the first round (at least two rings'
    /// worth).
    pub warmup: u64,
    /// `--quick`.
    pub quick: bool,
}

/// Everything measured: `runs[round][size index][case index]`.
pub struct FanoutMeasurements {
    /// Sizes in table order.
    pub sizes: Vec<usize>,
    /// Per round, size and case.
    pub runs: Vec<Vec<Vec<Timing>>>,
    /// CPUs the bench may use.
    pub cpus: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The 1-minute load average before and after (other work on the machine skews
    /// blocking processes more than pinned spinning ones).
    pub load: (Option<f64>, Option<f64>),
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Runs the rounds: starts the member processes, measures, stops them.
pub fn measure(plan: &Plan) -> Result<FanoutMeasurements> {
    let start = Instant::now();
    let load_before = load_average();
    let lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |what: &str| {
        if lines {
            eprintln!("shmq bench: [{:>5.1} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    let most = Case::ALL.iter().map(|c| c.members()).max().unwrap_or(1);
    let mut peers = Vec::with_capacity(most);
    for _ in 0..most {
        peers.push(Peer::spawn(None)?);
    }
    let total = (u64::from(plan.rounds) + 1) * (plan.sizes.len() * Case::ALL.len()) as u64;
    let bar = if lines { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut id = 0u64;
    let mut one = |peers: &mut [Peer], case: Case, size: usize, count: u64| {
        id += 1;
        run_case(peers, case, size, count, id)
            .with_context(|| format!("{} with {size}-byte messages", case.name()))
            .map_err(|e| match peers.iter_mut().find(|p| p.watchdog.as_ref().is_some_and(|w| w.is_finished())) {
                Some(p) => p.explain(e),
                None => e,
            })
    };
    // Warm-up: unrecorded; it also tells how long a message takes in each case. At least
    // two rings' worth, so that the producer has had to wait for the members (a stream
    // that fits in the ring measures mostly the wakeups at its end).
    let mut per_msg = vec![vec![Duration::ZERO; Case::ALL.len()]; plan.sizes.len()];
    say(&format!("warm-up: at least {} messages (two rings) per case and size", plan.warmup));
    for (si, &size) in plan.sizes.iter().enumerate() {
        let n = plan.warmup.max(2 * queue_capacity(size) / (size as u64 + 8));
        for (ci, &case) in Case::ALL.iter().enumerate() {
            bar.set_message(format!("warm-up: {} {}", case.name(), size_label(size)));
            let t = one(&mut peers, case, size, n)?;
            per_msg[si][ci] = t.delivered / n as u32;
            bar.inc(1);
        }
    }
    let mut runs = Vec::new();
    for r in 0..plan.rounds {
        let mut by_size = Vec::new();
        for (si, &size) in plan.sizes.iter().enumerate() {
            say(&format!("round {}/{}, {}", r + 1, plan.rounds, size_label(size)));
            let mut by_case = Vec::new();
            for (ci, &case) in Case::ALL.iter().enumerate() {
                bar.set_message(format!("round {}/{}: {} {}", r + 1, plan.rounds, case.name(), size_label(size)));
                let count = plan.fixed.unwrap_or_else(|| count_for(plan.budget, per_msg[si][ci]));
                let t = one(&mut peers, case, size, count)?;
                per_msg[si][ci] = t.delivered / count.max(1) as u32;
                by_case.push(t);
                bar.inc(1);
            }
            by_size.push(by_case);
        }
        runs.push(by_size);
    }
    bar.finish_and_clear();
    say("done");
    for p in peers {
        p.finish()?;
    }
    Ok(FanoutMeasurements {
        sizes: plan.sizes.clone(),
        runs,
        cpus: allowed_cpus().len(),
        elapsed: start.elapsed(),
        load: (load_before, load_average()),
    })
}

/// One case at one size in the JSON: medians over rounds.
#[derive(Serialize)]
pub struct CaseResult {
    /// `baseline`, `fanout4`, `members1`, `members2`.
    pub case: &'static str,
    /// Subscriptions the producer fed.
    pub subscriptions: usize,
    /// Member processes (over all subscriptions).
    pub members: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Messages streamed, over all rounds (each delivered to every subscription).
    pub messages: u64,
    /// Median over rounds of messages / time until every subscription had every message.
    pub delivered_msgs_per_s: f64,
    /// The same in MB/s (10⁶ bytes), counted once per message (not per subscription).
    pub delivered_mb_per_s: f64,
    /// Median over rounds of messages / time until the producer's last send returned.
    pub sent_msgs_per_s: f64,
    /// Each round's delivered msgs/s.
    pub delivered_per_round: Vec<f64>,
    /// The producer's `FUTEX_WAIT` calls per 1000 messages (over all rounds).
    pub producer_waits_per_1k: f64,
    /// The producer's `FUTEX_WAKE` calls per 1000 messages.
    pub producer_wakes_per_1k: f64,
    /// The members' `FUTEX_WAIT` calls per 1000 messages, over all members.
    pub member_waits_per_1k: f64,
}

/// A ratio of two cases at one size.
#[derive(Serialize)]
pub struct CaseRatio {
    /// Message size.
    pub size: usize,
    /// `fanout4/baseline` or `members2/members1`.
    pub ratio: &'static str,
    /// `delivered_msgs_per_s` or `sent_msgs_per_s` (higher is better).
    pub metric: &'static str,
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Each round's ratio.
    pub per_round: Vec<f64>,
    /// The target for the median (`fanout4/baseline` at 64 B: 0.6;
    /// `members2/members1`: 0.8), if it has one at this size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

/// The `subscriptions` object of `shmq bench --fanout --json`.
#[derive(Serialize)]
pub struct FanoutReport {
    /// Always `block`.
    pub wait: &'static str,
    /// Time budget of one run's stream (ms), without `--messages`.
    pub budget_ms: u64,
    /// `--messages`, if given.
    pub messages: Option<u64>,
    /// Unrecorded messages per case and size before the rounds (at least, and at least two
    /// rings' worth).
    pub warmup_messages: u64,
    /// Rounds.
    pub rounds: usize,
    /// The 1-minute load average before and after the run (null if unknown).
    pub load_average: [Option<f64>; 2],
    /// One per (case, size).
    pub results: Vec<CaseResult>,
    /// The ratios, per size.
    pub ratios: Vec<CaseRatio>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn case_index(c: Case) -> usize {
    Case::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

/// The JSON's `subscriptions` object.
pub fn build(m: &FanoutMeasurements, plan: &Plan) -> FanoutReport {
    let mut results = Vec::new();
    for (si, &size) in m.sizes.iter().enumerate() {
        for (ci, &case) in Case::ALL.iter().enumerate() {
            let runs: Vec<Timing> = m.runs.iter().map(|r| r[si][ci]).collect();
            let delivered: Vec<f64> = runs.iter().map(Timing::delivered_rate).collect();
            let sent: Vec<f64> = runs.iter().map(Timing::sent_rate).collect();
            let d = median(&delivered);
            let messages: u64 = runs.iter().map(|t| t.messages).sum();
            let per_1k = |f: fn(&Futex) -> u64| {
                runs.iter().map(|t| f(&t.futex)).sum::<u64>() as f64 * 1000.0 / messages.max(1) as f64
            };
            results.push(CaseResult {
                case: case.name(),
                subscriptions: case.subscriptions(),
                members: case.members(),
                size,
                messages,
                delivered_msgs_per_s: d,
                delivered_mb_per_s: d * size as f64 / 1e6,
                sent_msgs_per_s: median(&sent),
                delivered_per_round: delivered,
                producer_waits_per_1k: per_1k(|f| f.producer_waits),
                producer_wakes_per_1k: per_1k(|f| f.producer_wakes),
                member_waits_per_1k: per_1k(|f| f.member_waits),
            });
        }
    }
    let mut ratios = Vec::new();
    for (si, &size) in m.sizes.iter().enumerate() {
        for (name, num, den, target) in [
            ("fanout4/baseline", Case::Fanout4, Case::Baseline, (size == 64).then_some(0.6)),
            ("members2/members1", Case::Members2, Case::Members1, Some(0.8)),
        ] {
            for (metric, rate) in [
                ("delivered_msgs_per_s", Timing::delivered_rate as fn(&Timing) -> f64),
                ("sent_msgs_per_s", Timing::sent_rate as fn(&Timing) -> f64),
            ] {
                let per_round: Vec<f64> =
                    m.runs.iter().map(|r| rate(&r[si][case_index(num)]) / rate(&r[si][case_index(den)])).collect();
                let (min, max) = per_round.iter().fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
                ratios.push(CaseRatio {
                    size,
                    ratio: name,
                    metric,
                    median: median(&per_round),
                    min,
                    max,
                    per_round,
                    target: if metric == "delivered_msgs_per_s" { target } else { None },
                });
            }
        }
    }
    FanoutReport {
        wait: "block",
        budget_ms: plan.budget.as_millis() as u64,
        messages: plan.fixed,
        warmup_messages: plan.warmup,
        rounds: m.runs.len(),
        load_average: [m.load.0, m.load.1],
        results,
        ratios,
    }
}

/// The printed table.
pub fn table(m: &FanoutMeasurements, machine: &Machine, rep: &FanoutReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shmq bench --fanout: 1 producer + 1-4 member processes, not pinned, all waits block; {} ({} CPUs{}), Linux {}",
        machine.cpu_model,
        machine.cpus,
        if machine.virtualized { ", virtualized" } else { "" },
        machine.kernel
    );
    let _ = writeln!(
        s,
        "{} rounds, cases interleaved; {} in {:.1} s",
        rep.rounds,
        match rep.messages {
            Some(n) => format!("{n} messages per run"),
            None => format!("runs of ~{} ms streaming", rep.budget_ms),
        },
        m.elapsed.as_secs_f64()
    );
    let load = |l: Option<f64>| l.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"));
    let _ = writeln!(s, "load average {} before, {} after", load(m.load.0), load(m.load.1));
    let _ = writeln!(s, "every subscription checked to receive each message exactly once; medians over rounds");
    for case in Case::ALL {
        let _ = writeln!(s, "  {:<9} {}", case.name(), case.describe());
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<9} {:>13} {:>10} {:>13} {:>12} {:>8} {:>8} {:>8}",
        "size", "case", "delivered/s", "MB/s", "sent/s", "messages", "P wait", "P wake", "M wait"
    );
    let _ = writeln!(s, "{:<70} {:-^26}", "", " futex calls per 1k msgs ");
    let mut last = usize::MAX;
    for r in &rep.results {
        if r.size != last && last != usize::MAX {
            let _ = writeln!(s);
        }
        last = r.size;
        let _ = writeln!(
            s,
            "{:<8} {:<9} {:>13} {:>10.1} {:>13} {:>12} {:>8.1} {:>8.1} {:>8.1}",
            size_label(r.size),
            r.case,
            report::rate(r.delivered_msgs_per_s),
            r.delivered_mb_per_s,
            report::rate(r.sent_msgs_per_s),
            r.messages,
            r.producer_waits_per_1k,
            r.producer_wakes_per_1k,
            r.member_waits_per_1k
        );
    }
    let _ = writeln!(s, "\nratios of delivered msgs/s, median over rounds [min-max] (sent msgs/s in parentheses):");
    for r in rep.ratios.iter().filter(|r| r.metric == "delivered_msgs_per_s") {
        let sent = rep
            .ratios
            .iter()
            .find(|x| x.size == r.size && x.ratio == r.ratio && x.metric == "sent_msgs_per_s")
            .map(|x| format!("({:.2})", x.median))
            .unwrap_or_default();
        let target = match r.target {
            Some(t) => format!("target >= {t:.1}: {}", if r.median >= t { "met" } else { "NOT met" }),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<8} {:<18} {:.2} [{:.2}-{:.2}] {:<7} {}",
            size_label(r.size),
            r.ratio,
            r.median,
            r.min,
            r.max,
            sent,
            target
        );
    }
    s
}

/// `shmq bench --fanout`: measures, prints the table, writes the JSON.
pub fn run(plan: &Plan, json: Option<&std::path::Path>) -> Result<()> {
    let m = measure(plan)?;
    let sub = build(&m, plan);
    let machine = report::machine_info(m.cpus, None);
    print!("{}", table(&m, &machine, &sub));
    if let Some(path) = json {
        let rep = report::Report::for_fanout(machine, &m, plan, sub);
        let text = serde_json::to_string_pretty(&rep)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_of_every_number_matches_adding_them_one_by_one() {
        for m in [0u64, 1, 2, 3, 17, 1000, 123_457] {
            let mut t = Tally::default();
            (0..m).for_each(|i| t.add(i));
            assert_eq!(t, Tally::of_all(m), "{m}");
        }
        // Large enough for the sums to wrap.
        let m = 5_000_000u64;
        let mut t = Tally::default();
        (0..m).for_each(|i| t.add(i));
        assert_eq!(t, Tally::of_all(m));
    }

    #[test]
    fn a_tally_missing_one_message_or_with_a_duplicate_does_not_match() {
        let mut t = Tally::default();
        (0..100u64).filter(|&i| i != 40).for_each(|i| t.add(i));
        assert_ne!(t, Tally::of_all(100));
        // 40 missing, 41 twice: the count matches, the sum does not.
        t.add(41);
        assert_eq!(t.count, 100);
        assert_ne!(t, Tally::of_all(100));
        // 38 and 42 missing, 40 twice: count and sum match, the sum of squares does not.
        let mut u = Tally::default();
        (0..100u64).filter(|&i| i != 38 && i != 42).for_each(|i| u.add(i));
        u.add(40);
        u.add(40);
        assert_eq!((u.count, u.sum), (100, Tally::of_all(100).sum));
        assert_ne!(u, Tally::of_all(100));
    }

    #[test]
    fn a_tally_reads_back_what_a_member_says() {
        let t = Tally { count: 3, sum: 7, sum_sq: u64::MAX };
        assert_eq!(Tally::parse(&format!("{} {} {}", t.count, t.sum, t.sum_sq)), Some(t));
        assert_eq!(Tally::parse("1 2"), None);
        assert_eq!(Tally::parse("1 2 3 4"), None);
        assert_eq!(Tally::parse("1 x 3"), None);
    }
}
