//! `shmq bench --acks`, run for real with tiny counts: both parts (throughput of explicit
//! against automatic acks, redelivery after a member is killed) end in the JSON with sane
//! numbers, its logs are removed, and its options are checked.
//!
//! The log directory is on the real disk, under cargo's temporary directory for integration
//! tests; the bench runs under a deadline.

#![cfg(feature = "cli")]

mod cli_support;
mod common;

use std::process::Output;
use std::time::Duration;

use cli_support::*;
use common::LogDir;
use serde_json::Value;

/// Longest the bench may run before the test kills it and fails.
const BENCH_DEADLINE: Duration = Duration::from_secs(180);

/// Runs `shmq ARGS` under [`BENCH_DEADLINE`].
fn shmq(args: &[&str]) -> Output {
    wait_within(spawn_shmq(args), BENCH_DEADLINE)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

#[test]
fn bench_acks_measures_explicit_against_auto_and_redelivery_after_a_kill() {
    let dir = LogDir::new("bench-acks");
    std::fs::create_dir_all(&dir.0).unwrap();
    let logs = dir.0.join("logs");
    let json_path = dir.0.join("acks.json");
    // Tiny counts: 3000 messages per run (each member checks it gets exactly 0..3000 in
    // order, acking each with explicit acks), 2 rounds, 3 members killed.
    let o = shmq(&[
        "bench",
        "--acks",
        "--quick",
        "--size",
        "64,1KiB",
        "--rounds",
        "2",
        "--messages",
        "3000",
        "--kills",
        "3",
        "--dir",
        logs.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    if o.status.code() != Some(0) && stderr(&o).contains("tmpfs") {
        eprintln!("skipped: the target directory is on tmpfs");
        return;
    }
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("explicit/auto") && table.contains("target >= 0.7"), "{table}");
    assert!(table.contains("first message delivered again") && table.contains("target <= 250 ms"), "{table}");
    // Every queue's log is gone.
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0, "files left in {}", logs.display());

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["run"]["rounds"], 2);
    assert_eq!(v["acks"]["fsync"], "never");
    assert_eq!(v["acks"]["wait"], "block");

    // Throughput: one result per (case, size), every message of every run delivered.
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "one result per (case, size)");
    for case in ["auto", "explicit"] {
        for size in [64u64, 1024] {
            let r = results
                .iter()
                .find(|r| r["case"] == case && r["size"] == size)
                .unwrap_or_else(|| panic!("no result for {case} at {size} B"));
            assert_eq!(r["messages_per_run"], 3000, "{r}");
            assert_eq!(r["messages"], 6000, "{r}");
            let d = num(r, "delivered_msgs_per_s");
            assert!(d > 0.0 && d.is_finite() && num(r, "sent_msgs_per_s") > 0.0, "{r}");
            assert!((num(r, "delivered_mb_per_s") - d * size as f64 / 1e6).abs() <= d * 1e-9, "{r}");
            let per_round = r["delivered_per_round"].as_array().unwrap();
            assert_eq!(per_round.len(), 2, "{r}");
            assert!(per_round.iter().all(|x| x.as_f64().is_some_and(|x| x > 0.0)), "{r}");
        }
    }
    let ratios = v["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 2, "one ratio per size");
    for (size, target) in [(64u64, Some(0.7)), (1024, None)] {
        let r = ratios.iter().find(|r| r["size"] == size).unwrap_or_else(|| panic!("no ratio at {size} B"));
        assert_eq!(r["ratio"], "explicit/auto", "{r}");
        let (med, min, max) = (num(r, "median"), num(r, "min"), num(r, "max"));
        assert!(min > 0.0 && min <= med && med <= max && max.is_finite(), "{r}");
        assert_eq!(r["per_round"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["target"].as_f64(), target, "{r}");
        assert_eq!(r["met"].as_bool(), target.map(|t| med >= t), "{r}");
    }

    // Redelivery: three kills, each latency measured from the kill (never before it).
    let red = &v["redelivery"];
    assert_eq!(red["rounds"], 3);
    assert_eq!(red["held"], 8);
    assert_eq!(red["ack_wait_ms"], 30_000);
    assert_eq!(num(red, "target_p99_ms"), 250.0);
    let per_round: Vec<f64> =
        red["first_per_round_ms"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(per_round.len(), 3);
    assert!(per_round.iter().all(|&x| x > 0.0), "{red}");
    let first: Vec<f64> = ["p50", "p90", "p99", "max"].iter().map(|k| num(&red["first_ms"], k)).collect();
    let all: Vec<f64> = ["p50", "p90", "p99", "max"].iter().map(|k| num(&red["all_ms"], k)).collect();
    assert!(first.windows(2).all(|w| w[0] <= w[1]) && all.windows(2).all(|w| w[0] <= w[1]), "{red}");
    // Every held message comes after the first one.
    assert!(first.iter().zip(&all).all(|(f, a)| f <= a), "{red}");
    assert_eq!(first[3], per_round.iter().copied().fold(0.0, f64::max), "{red}");
    assert_eq!(red["met"].as_bool(), Some(first[2] <= 250.0), "{red}");
}

#[test]
fn bench_acks_refuses_bad_options_and_memory_file_systems() {
    // Each message carries its sequence number; --kills needs --acks and at least one kill.
    fails_with(2, &shmq(&["bench", "--acks", "--size", "4"]));
    fails_with(2, &shmq(&["bench", "--acks", "--kills", "0"]));
    fails_with(2, &shmq(&["bench", "--kills", "3"]));
    fails_with(2, &shmq(&["bench", "--acks", "--fanout"]));
    fails_with(2, &shmq(&["bench", "--acks", "--durable"]));
    if std::fs::metadata("/dev/shm").is_ok() {
        let o = shmq(&["bench", "--acks", "--dir", "/dev/shm", "--messages", "8", "--rounds", "1", "--kills", "1"]);
        fails_with(1, &o);
        assert!(stderr(&o).contains("tmpfs") && stderr(&o).contains("--allow-tmpfs"), "{}", stderr(&o));
    }
}
