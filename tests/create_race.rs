//! Creation races: six processes call `Queue::create`, `Queue::open_or_create`,
//! `Producer::open` and `Queue::inspect` on one fresh name at the same instant, round after
//! round. Every call must end in `Ok` or the one typed error its situation allows (`Exists`
//! for a create that lost, `NotFound` for an open that came first), never `Corrupt` or
//! `Busy`, and every process that got a queue must have got the same one (same creator pid
//! and creation time), the one the parent finds afterwards.
//!
//! Every fourth round starts from an abandoned object (zero bytes, no creation lock held:
//! what a creator of an older build that died at the wrong moment leaves): the
//! `open_or_create` callers must replace it exactly once between them.
//!
//! 1,000 rounds by default; `SHMQ_RACE_ROUNDS` sets another number.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Child, TestQueue};
use rustix::time::{ClockId, Timespec};
use shmq::{Config, Error, Options, Producer, Queue};

const RACERS: usize = 6;
const OPS: [&str; RACERS] = ["create", "open_or_create", "producer", "open_or_create", "inspect", "create"];

fn options() -> Options {
    Options::new().capacity(4096).max_message(256)
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What a call returned, as one word plus the identity of the queue it got.
fn outcome(r: Result<Config, Error>) -> String {
    match r {
        Ok(c) => format!("ok {} {}", c.creator_pid, c.created_unix_ns),
        Err(Error::Exists(_)) => "exists".into(),
        Err(Error::NotFound(_)) => "notfound".into(),
        Err(e) => format!("error {}", format!("{e:?}").replace(' ', "_")),
    }
}

#[test]
fn child_role() {
    common::run_child(|role, base| match role {
        "racer" => {
            let index: usize = common::arg("index");
            while let Some(line) = common::hear() {
                // "ROUND OP START_NS"
                let mut f = line.split(' ');
                let round: u64 = f.next().unwrap().parse().unwrap();
                let op = f.next().unwrap().to_owned();
                let start: u64 = f.next().unwrap().parse().unwrap();
                let name = format!("{base}-{round}");
                let at = Timespec { tv_sec: (start / 1_000_000_000) as _, tv_nsec: (start % 1_000_000_000) as _ };
                let _ = rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, &at);
                let r = match op.as_str() {
                    "create" => Queue::create(&name, options()),
                    "open_or_create" => Queue::open_or_create(&name, options()),
                    "producer" => Producer::open(&name).map(|p| p.config().clone()),
                    "inspect" => Queue::inspect(&name).map(|s| s.config),
                    other => panic!("unknown op {other}"),
                };
                common::say(&format!("done {round} {index} {op} {}", outcome(r)));
            }
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn racing_creators_and_openers_all_end_on_one_queue_with_only_typed_errors() {
    let rounds: u64 = std::env::var("SHMQ_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let base = TestQueue::name("race");
    let mut racers: Vec<Child> =
        (0..RACERS).map(|i| Child::spawn("racer", &base.name, &[("index", i.to_string())])).collect();
    let mut replaced = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let name = format!("{}-{round}", base.name);
        let _guard = TestQueue { name: name.clone() };
        let abandoned = round % 4 == 3;
        if abandoned {
            std::fs::File::create(common::path_of(&name)).expect("make an abandoned object");
        }
        // Everyone starts at the same instant, a little ahead of now.
        let start = monotonic_ns() + Duration::from_millis(3).as_nanos() as u64;
        let mut ops = Vec::new();
        for (i, racer) in racers.iter_mut().enumerate() {
            let mut op = OPS[(i + round as usize) % RACERS];
            if abandoned && matches!(op, "producer" | "inspect") {
                // An opener that sees the abandoned object before it is replaced rightly
                // gets `Corrupt`; those rounds are about the replacers.
                op = "open_or_create";
            }
            ops.push(op);
            racer.tell(&format!("{round} {op} {start}"));
        }
        let mut identities = BTreeSet::new();
        let mut creates_ok = 0;
        let mut results = Vec::new();
        for (i, racer) in racers.iter_mut().enumerate() {
            let said = racer.expect("done");
            let f: Vec<&str> = said.split(' ').collect();
            assert_eq!(f[0].parse::<u64>().unwrap(), round);
            assert_eq!(f[1].parse::<usize>().unwrap(), i);
            let (op, result) = (f[2], f[3]);
            assert_eq!(op, ops[i]);
            let allowed = match op {
                "create" => matches!(result, "ok" | "exists"),
                "open_or_create" => result == "ok",
                _ => matches!(result, "ok" | "notfound"),
            };
            assert!(allowed, "round {round} (abandoned: {abandoned}): racer {i} {op} gave {said:?}; all: {results:?}");
            if result == "ok" {
                let pid: u32 = f[4].parse().unwrap();
                let created: u64 = f[5].parse().unwrap();
                identities.insert((pid, created));
                creates_ok += usize::from(op == "create");
            }
            results.push(said);
        }
        assert_eq!(identities.len(), 1, "round {round}: the racers got different queues: {results:?}");
        assert!(creates_ok <= 1, "round {round}: two creates succeeded: {results:?}");
        let (creator, created) = *identities.first().unwrap();
        let creator_index = racers.iter().position(|r| r.pid() == creator);
        let creator_index = creator_index.unwrap_or_else(|| {
            panic!("round {round}: the queue's creator {creator} is none of the racers: {results:?}")
        });
        assert!(
            matches!(ops[creator_index], "create" | "open_or_create"),
            "round {round}: racer {creator_index} ({}) created it: {results:?}",
            ops[creator_index]
        );
        let now = Queue::inspect(&name).unwrap_or_else(|e| panic!("round {round}: the queue after the race: {e}"));
        assert_eq!((now.config.creator_pid, now.config.created_unix_ns), (creator, created), "round {round}");
        replaced += usize::from(abandoned);
    }
    for mut racer in racers {
        racer.hang_up();
        racer.wait_ok();
    }
    eprintln!("{rounds} rounds ({replaced} from an abandoned object) in {:?}", started.elapsed());
}
