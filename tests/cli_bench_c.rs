//! `shmq bench --transport shmq-c`: the C ABI (`libshmq.so`, loaded at run time by both
//! bench processes) measured against the Rust path, run for real with tiny counts. Checks
//! the rows and the shmq-c / shmq ratio lines in the table and the JSON, and the errors of
//! a missing library. No timing is asserted: the figures only have to be sane.
//!
//! The library must be in the same target directory as the `shmq` under test: the
//! project's `cargo test --workspace --all-features` builds it. Without it the test fails
//! and says how to build it.

#![cfg(feature = "cli")]

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::*;
use serde_json::Value;

/// The `libshmq.so` of this build: `target/<profile>/deps/`, where rustc writes it for
/// `cargo test --workspace` (cargo copies it up next to `shmq` only for `cargo build`, so
/// a copy there may be missing or stale), else next to the `shmq` under test. Fails (never
/// skips) when neither is there.
fn libshmq() -> PathBuf {
    let bin = Path::new(BIN);
    let deps = bin.with_file_name("deps").join("libshmq.so");
    let lib = if deps.exists() { deps } else { bin.with_file_name("libshmq.so") };
    assert!(
        lib.exists(),
        "{} is missing: the shmq-c transport needs the C library built into the same target directory as {BIN}: \
         run `cargo build -p shmq-c` (same profile), or the project's `cargo test --workspace --all-features`",
        lib.display()
    );
    lib
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

#[test]
fn bench_shmq_c_measures_the_c_abi_against_the_rust_path() {
    let lib = libshmq();
    let dir = Scratch::new("bench-c");
    let json_path = dir.0.join("bench.json");
    let single_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) < 2;
    // Block works on one CPU too; spin needs two.
    let waits = if single_cpu { "block" } else { "spin,block" };
    // Tiny counts: 2000 round trips and 2000 streamed messages per run, one round.
    let o = shmq(&[
        "bench",
        "--transport",
        "shmq-c,shmq",
        "--wait",
        waits,
        "--size",
        "64",
        "--rounds",
        "1",
        "--messages",
        "2000",
        "--json",
        json_path.to_str().unwrap(),
        "--libshmq",
        lib.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("shmq-c (the C ABI, libshmq.so) relative to shmq (Rust)"), "{table}");
    assert!(table.contains("p50 C-Rust, ns") && table.contains("<= +10 ns") && table.contains("<= 1.10"), "{table}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    let results = v["results"].as_array().unwrap();
    let waits: Vec<&str> = waits.split(',').collect();
    assert_eq!(results.len(), 2 * waits.len(), "one result per (transport, wait): {results:?}");
    for t in ["shmq-c", "shmq"] {
        for &w in &waits {
            let r = results
                .iter()
                .find(|r| r["transport"] == t && r["wait"] == w && r["size"] == 64)
                .unwrap_or_else(|| panic!("no result for {t}/{w}"));
            assert!(table.contains(&format!("{t}/{w}")), "no row {t}/{w} in\n{table}");
            let l = &r["latency_ns"];
            let p = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("{t}/{w}: {k} missing"));
            assert!(p("p50") > 0, "{t}/{w}: {l}");
            assert!(p("p50") <= p("p90") && p("p90") <= p("p99"), "{t}/{w}: {l}");
            assert!(p("p99") <= p("p999") && p("p999") <= p("max"), "{t}/{w}: {l}");
            assert_eq!(r["round_trips"], 2000, "{r}");
            assert!(num(r, "throughput_msgs_per_s") > 0.0, "{r}");
        }
    }

    // shmq-c / shmq: p50 (ratio and difference in ns) and p99, per wait, with the targets.
    let ratios = v["ratios"].as_array().unwrap();
    let c: Vec<&Value> = ratios.iter().filter(|r| r["transport"] == "shmq-c").collect();
    assert_eq!(c.len(), 2 * waits.len(), "p50 and p99 per wait: {c:?}");
    let lat = |t: &str, w: &str, k: &str| {
        let r = results.iter().find(|r| r["transport"] == t && r["wait"] == w).unwrap();
        r["latency_ns"][k].as_f64().unwrap()
    };
    for &w in &waits {
        let get = |metric: &str| {
            *c.iter()
                .find(|r| r["wait"] == w && r["metric"] == metric)
                .unwrap_or_else(|| panic!("no shmq-c {metric} ratio for {w}"))
        };
        let (p50, p99) = (get("latency_p50"), get("latency_p99"));
        for r in [p50, p99] {
            assert_eq!(r["baseline"], "shmq", "{r}");
            assert_eq!(r["size"], 64, "{r}");
            assert_eq!(r["per_round"].as_array().unwrap().len(), 1, "{r}");
            let (med, min, max) = (num(r, "median"), num(r, "min"), num(r, "max"));
            assert!(med > 0.0 && min <= med && med <= max && max.is_finite(), "{r}");
        }
        // One round: the ratios and the difference are those of the merged results.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(num(p50, "median"), lat("shmq-c", w, "p50") / lat("shmq", w, "p50")), "{p50}");
        assert!(close(num(p99, "median"), lat("shmq-c", w, "p99") / lat("shmq", w, "p99")), "{p99}");
        let diff = num(&p50["diff_ns"], "median");
        assert!(close(diff, lat("shmq-c", w, "p50") - lat("shmq", w, "p50")), "{p50}");
        assert_eq!(p50["target"], "p50 <= shmq p50 + 10 ns", "{p50}");
        assert_eq!(p99["target"], "p99 <= 1.10 x shmq p99", "{p99}");
        assert_eq!(p50["within_target"].as_bool(), Some(diff <= 10.0), "{p50}");
        assert_eq!(p99["within_target"].as_bool(), Some(num(p99, "median") <= 1.10), "{p99}");
        assert!(p99.get("diff_ns").is_none(), "{p99}");
    }
}

#[test]
fn bench_shmq_c_without_the_library_fails_and_says_how_to_build_it() {
    let dir = Scratch::new("bench-c-missing");
    let missing = dir.0.join("libshmq.so");
    let args = ["bench", "--size", "64", "--rounds", "1", "--messages", "200", "--libshmq"];
    // Asked for: an error that names the file and the build command.
    let mut a = args.to_vec();
    a.extend([missing.to_str().unwrap(), "--transport", "shmq-c"]);
    let o = shmq(&a);
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(missing.to_str().unwrap()) && e.contains("cargo build --release -p shmq-c"), "{e}");

    // A file that is no library: dlopen's reason.
    std::fs::write(&missing, b"not a library").unwrap();
    let o = shmq(&a);
    assert_eq!(o.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("cannot load"), "{}", stderr(&o));
    std::fs::remove_file(&missing).unwrap();

    // Not asked for (all transports): skipped with the reason, the others measured.
    let mut a = args.to_vec();
    a.extend([missing.to_str().unwrap(), "--wait", "block"]);
    let o = shmq(&a);
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("transport shmq-c skipped") && e.contains("cargo build --release -p shmq-c"), "{e}");
    let table = stdout(&o);
    assert!(table.contains("shmq/block") && !table.contains("shmq-c/"), "{table}");

    // --libshmq is for the transports only.
    for mode in ["--fanout", "--durable", "--acks"] {
        let o = shmq(&["bench", mode, "--libshmq", missing.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{mode}: stderr: {}", stderr(&o));
        assert!(stderr(&o).contains("--libshmq"), "{mode}: {}", stderr(&o));
    }
}
