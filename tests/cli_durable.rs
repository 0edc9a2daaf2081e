//! The `shmq` binary on durable queues, run for real: `create --durable` and its options,
//! `send --ids`, `stat` with the log's part, and `shmq journal` as a process that journals
//! a queue another process produces to, stopped by SIGTERM.
//!
//! Log directories are on the real disk, under cargo's temporary directory for integration
//! tests; queue names carry the test's pid; every child runs under a deadline.

#![cfg(feature = "cli")]

mod cli_support;
mod common;

use std::time::{Duration, Instant};

use cli_support::*;
use common::LogDir;
use serde_json::Value;

fn stat_json(q: &str) -> Value {
    json(&ok(shmq(&["stat", q, "--json"])))
}

fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} is not a number in {v}"))
}

#[test]
fn create_durable_then_send_ids_recv_and_stat_show_the_log() {
    let q = Name::new("round");
    let dir = LogDir::new("round");
    let o = ok(shmq(&[
        "create",
        &q,
        "--durable",
        dir.path(),
        "--fsync",
        "always",
        "--max-log",
        "64MiB",
        "--retain",
        "acked",
    ]));
    assert!(
        stdout(&o).contains(&format!("durable: log in {}, fsync always, max log 64 MiB", dir.path())),
        "{}",
        stdout(&o)
    );
    assert!(dir.0.join("META").exists(), "the log is on disk");

    // --ids: one id per message, increasing; without it nothing is printed.
    let o = ok(shmq(&["send", &q, "--ids", "alpha", "beta", "gamma"]));
    let ids: Vec<u64> = stdout(&o).lines().map(|l| l.parse().expect("an id per line")).collect();
    assert_eq!(ids.len(), 3, "{}", stdout(&o));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let o = ok(shmq(&["send", &q, "delta"]));
    assert_eq!(stdout(&o), "");

    let s = stat_json(&q);
    let d = &s["durable"];
    assert_eq!(d["log_dir"], dir.path(), "{d}");
    assert_eq!(d["fsync"], "always", "{d}");
    assert!(d["fsync_interval_ns"].is_null(), "{d}");
    assert_eq!(u(d, "max_log_bytes"), 64 << 20);
    assert_eq!(d["retain"], "acked", "{d}");
    // Under always every send returned once synced: the log holds all four.
    let written = u(d, "written");
    assert!(written > ids[2], "{d}");
    assert_eq!(u(d, "durable"), written, "{d}");
    assert!(u(d, "ceiling") > written, "{d}");
    assert_eq!(u(d, "base"), 0, "{d}");
    assert!(u(d, "syncs") >= 1 && u(d, "writes") >= 1, "{d}");
    assert_eq!(d["failed"], false, "{d}");
    let text = stdout(&ok(shmq(&["stat", &q])));
    assert!(text.contains(&format!("durable      log in {}, fsync always", dir.path())), "{text}");
    assert!(text.contains(&format!("log          written {written}, durable {written}")), "{text}");

    let o = ok(shmq(&["recv", &q, "-n", "4", "--timeout", "10s"]));
    assert_eq!(stdout(&o), "alpha\nbeta\ngamma\ndelta\n");

    // A volatile queue has no durable part.
    let v = Name::new("volatile");
    ok(shmq(&["create", &v]));
    assert!(stat_json(&v)["durable"].is_null());
    assert!(!stdout(&ok(shmq(&["stat", &v]))).contains("durable"));
}

#[test]
fn durable_options_without_durable_or_with_bad_values_exit_2() {
    let q = Name::new("bad");
    let dir = LogDir::new("bad");
    let bad: [&[&str]; 6] = [
        &["--fsync", "always"],
        &["--max-log", "1MiB"],
        &["--durable", dir.path(), "--fsync", "sometimes"],
        &["--durable", dir.path(), "--fsync", "interval:0"],
        &["--durable", dir.path(), "--retain", "0"],
        &["--durable", dir.path(), "--max-log", "0"],
    ];
    for extra in bad {
        let mut args = vec!["create", &*q];
        args.extend_from_slice(extra);
        fails_with(2, &shmq(&args));
        assert!(!dir.0.exists(), "{extra:?} touched the log directory");
    }
    assert!(shmq::Queue::inspect(&q).is_err(), "nothing was created");
    // An interval policy is shown as it was given.
    let o = ok(shmq(&["create", &q, "--durable", dir.path(), "--fsync", "interval:250ms", "--retain", "1MiB"]));
    assert!(stdout(&o).contains("fsync interval:250ms, max log 8 GiB, retain 1 MiB"), "{}", stdout(&o));
    let d = &stat_json(&q)["durable"];
    assert_eq!((d["fsync"].as_str(), u(d, "fsync_interval_ns")), (Some("interval"), 250_000_000), "{d}");
    assert_eq!((d["retain"].as_str(), u(d, "retain_bytes")), (Some("bytes"), 1 << 20), "{d}");
}

/// Polls `cond` on the queue's durable stats until it holds (bounded by [`DEADLINE`]).
fn wait_for_log(q: &str, what: &str, cond: impl Fn(&shmq::DurableStats) -> bool) -> shmq::DurableStats {
    let start = Instant::now();
    loop {
        let d = shmq::Queue::inspect(q).unwrap().durable.expect("durable");
        if cond(&d) {
            return d;
        }
        assert!(start.elapsed() < DEADLINE, "{what}: still {d:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn journal_syncs_what_another_process_sent_and_stops_on_sigterm() {
    let q = Name::new("journal");
    let dir = LogDir::new("journal");
    // An interval of an hour: the only timer that could sync within the test is `journal`.
    ok(shmq(&["create", &q, "--durable", dir.path(), "--fsync", "interval:1h", "--mode", "spsc"]));
    let mut tx = shmq::Producer::open(&q).unwrap();
    let last = (0..5).map(|i| tx.send(format!("m{i}").as_bytes()).unwrap()).last().unwrap();
    let before = shmq::Queue::inspect(&q).unwrap().durable.unwrap();
    assert!(before.durable <= last, "nothing synced these yet: {before:?}");

    let journal = spawn_shmq(&["journal", &q, "--interval", "10ms"]);
    let pid = journal.id();
    let after = wait_for_log(&q, "the journal syncs what was sent", |d| d.durable > last && d.written > last);
    assert!(after.syncs > before.syncs, "{after:?}");
    // It holds no participant slot: the SPSC queue's one producer is still ours alone.
    let s = shmq::Queue::inspect(&q).unwrap();
    assert_eq!(s.participants.len(), 1, "{:?}", s.participants);
    assert_eq!(s.participants[0].pid, std::process::id());

    // More sent while it runs is synced too.
    let more = tx.send(b"later").unwrap();
    wait_for_log(&q, "the journal keeps going", |d| d.durable > more);

    // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let o = ok(wait_with_deadline(journal));
    assert!(stdout(&o).contains(&format!("journal {:?} stopped (SIGTERM) after", &*q)), "{}", stdout(&o));
    drop(tx);
}

#[test]
fn journal_of_a_volatile_or_missing_queue_exits_1() {
    let q = Name::new("jvol");
    ok(shmq(&["create", &q]));
    let o = shmq(&["journal", &q]);
    fails_with(1, &o);
    assert!(stderr(&o).contains("not durable"), "{}", stderr(&o));
    fails_with(1, &shmq(&["journal", &format!("{}-missing", &*q)]));
    fails_with(2, &shmq(&["journal", &q, "--interval", "0"]));
}

#[test]
fn a_small_durable_queue_gets_a_max_message_its_records_fit() {
    // Half of 64 KiB is too much for a durable record (it carries 16 bytes more): the
    // default is what fits, and a larger one asked for is refused before anything is made.
    let q = Name::new("small");
    let dir = LogDir::new("small");
    ok(shmq(&["create", &q, "--durable", dir.path(), "--capacity", "64KiB"]));
    let s = stat_json(&q);
    assert_eq!(u(&s, "max_message"), 32768 - 16, "{s}");
    // The largest message goes through.
    let big = "x".repeat(32768 - 16);
    ok(shmq(&["send", &q, &big]));
    assert_eq!(stdout(&ok(shmq(&["recv", &q, "--count", "1"]))).trim_end(), big);

    let q2 = Name::new("small2");
    let dir2 = LogDir::new("small2");
    let o = shmq(&["create", &q2, "--durable", dir2.path(), "--capacity", "64KiB", "--max-message", "32KiB"]);
    fails_with(2, &o);
    let err = stderr(&o);
    assert!(err.contains("'32KiB'") && err.contains("32752 bytes") && err.contains("16 bytes"), "{err}");
    assert!(!dir2.0.join("META").exists(), "nothing was made");
}
