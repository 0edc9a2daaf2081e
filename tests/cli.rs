//! The `shmq` binary, run for real: every subcommand on real queues, exit codes, and a quick
//! benchmark whose JSON, SVG and histogram files are checked.
//!
//! Every queue name carries the test's pid and is removed by a guard; every child process
//! runs under a deadline and every wait in it has a timeout.

#![cfg(feature = "cli")]

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;
use serde_json::Value;

#[test]
fn create_send_stat_recv_rm_round_trip() {
    let q = Name::new("basic");
    let created = stdout(&ok(shmq(&["create", &q, "--capacity", "64KiB", "--mode", "spsc"])));
    assert!(created.contains(&*q), "{created}");

    ok(shmq(&["send", &q, "hello", "second message"]));
    ok(shmq_with_input(&["send", &q], b"from stdin\n\nlast line without newline"));

    let stat = json(&ok(shmq(&["stat", &q, "--json"])));
    assert_eq!(stat["schema_version"], 1);
    assert_eq!(stat["name"], &*q);
    assert_eq!(stat["mode"], "spsc");
    assert_eq!(stat["capacity"], 65536);
    assert_eq!(stat["max_message"], 32768, "default max message is capped at half the capacity");
    assert_eq!(stat["permissions"], "0600");
    assert_eq!(stat["messages"], 5);
    assert_eq!(stat["sent"]["messages"], 5);
    assert!(stat["used_bytes"].as_u64().unwrap() > 0);
    assert!(stat["rates"].is_null());
    let human = stdout(&ok(shmq(&["stat", &q, "--interval", "20ms"])));
    assert!(human.contains("5 messages") && human.contains("rates"), "{human}");

    let got = stdout(&ok(shmq(&["recv", &q, "--count", "5", "--timeout", "2s"])));
    assert_eq!(got, "hello\nsecond message\nfrom stdin\n\nlast line without newline\n");

    let stat = json(&ok(shmq(&["stat", &q, "--json"])));
    assert_eq!(stat["messages"], 0);
    assert_eq!(stat["received"]["messages"], 5);

    ok(shmq(&["rm", &q]));
    fails_with(1, &shmq(&["stat", &q]));
}

#[test]
fn recv_prints_hex_json_and_escapes_binary() {
    let q = Name::new("formats");
    ok(shmq(&["create", &q]));
    ok(shmq_with_input(&["send", &q], b"tab\there\nbin\x00\xff\n"));
    ok(shmq(&["send", &q, "grüße", "{\"k\":1}"]));
    let text = stdout(&ok(shmq(&["recv", &q, "-n", "2", "--timeout", "2s"])));
    assert_eq!(text, "tab\\there\nbin\\x00\\xff\n");
    let hex = stdout(&ok(shmq(&["recv", &q, "--hex", "--timeout", "2s"])));
    assert_eq!(hex, "6772c3bc c39f65\n".replace(' ', ""));
    let line = stdout(&ok(shmq(&["recv", &q, "--json", "--timeout", "2s"])));
    let v: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["text"], "{\"k\":1}");
    assert_eq!(v["len"], 7);
    assert_eq!(v["hex"], "7b226b223a317d");
}

#[test]
fn recv_on_an_empty_queue_exits_1_after_its_timeout() {
    let q = Name::new("empty");
    ok(shmq(&["create", &q]));
    let start = Instant::now();
    let o = shmq(&["recv", &q, "--timeout", "50ms"]);
    fails_with(1, &o);
    assert!(start.elapsed() >= Duration::from_millis(50), "the timeout fired early");
    assert!(stderr(&o).contains(&*q), "{}", stderr(&o));
    fails_with(1, &shmq(&["recv", &q, "--timeout", "0"]));
}

#[test]
fn send_to_a_full_queue_exits_1_and_says_so() {
    let q = Name::new("full");
    ok(shmq(&["create", &q, "--capacity", "1KiB", "--max-message", "256"]));
    let big = "x".repeat(200);
    let args: Vec<&str> = ["send", &*q].into_iter().chain(std::iter::repeat_n(big.as_str(), 10)).collect();
    let o = shmq(&args);
    fails_with(1, &o);
    assert!(stderr(&o).contains("full") && stderr(&o).contains(&*q), "{}", stderr(&o));
    let o = shmq(&["send", &q, "--timeout", "20ms", &big]);
    fails_with(1, &o);
    let too_big = "y".repeat(300);
    let o = shmq(&["send", &q, &too_big]);
    fails_with(1, &o);
}

#[test]
fn ls_json_lists_the_queue() {
    let q = Name::new("listed");
    ok(shmq(&["create", &q, "--mode", "mpsc", "--capacity", "128KiB"]));
    ok(shmq(&["send", &q, "one"]));
    let v = json(&ok(shmq(&["ls", "--json"])));
    assert_eq!(v["schema_version"], 1);
    let e = v["queues"].as_array().unwrap().iter().find(|e| e["name"] == *q).expect("queue listed");
    assert_eq!(e["mode"], "mpsc");
    assert_eq!(e["capacity"], 131072);
    assert_eq!(e["messages"], 1);
    assert_eq!(e["orphaned"], false);
    assert!(e["error"].is_null());
    assert!(stdout(&ok(shmq(&["ls"]))).contains(&*q));
}

#[test]
fn ls_flags_a_queue_whose_participants_all_died() {
    let q = Name::new("orphan");
    ok(shmq(&["create", &q]));
    // A consumer that waits (bounded), then is killed.
    let mut child =
        Command::new(BIN).args(["recv", &q, "--timeout", "60s"]).stdout(Stdio::null()).spawn().expect("start recv");
    let start = Instant::now();
    loop {
        let s = json(&ok(shmq(&["stat", &q, "--json"])));
        if s["participants"].as_array().unwrap().iter().any(|p| p["alive"] == true) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the consumer never registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let v = json(&ok(shmq(&["ls", "--json"])));
    let e = v["queues"].as_array().unwrap().iter().find(|e| e["name"] == *q).expect("queue listed");
    assert_eq!(e["participants"], 1);
    assert_eq!(e["alive_participants"], 0);
    assert_eq!(e["orphaned"], true);
    assert!(stdout(&ok(shmq(&["ls"]))).contains("ORPHANED"));
}

#[test]
fn bad_sizes_durations_names_and_permissions_exit_2_with_a_message() {
    let q = Name::new("usage");
    // One byte over the subscription-name limit.
    let long_sub = "s".repeat(shmq::Subscription::MAX_NAME_LEN + 1);
    let cases: &[&[&str]] = &[
        &["create", &q, "--capacity", "4KB"],
        &["create", &q, "--capacity", "lots"],
        &["create", &q, "--capacity", "3KiB"],
        &["create", &q, "--capacity", "1KiB", "--max-message", "1KiB"],
        &["create", &q, "--permissions", "400"],
        &["create", &q, "--permissions", "9"],
        &["create", &q, "--mode", "many"],
        &["create", "bad/name"],
        &["create", ".hidden"],
        &["create", ""],
        &["recv", &q, "--timeout", "5"],
        &["recv", &q, "--timeout", "5 fortnights"],
        &["send", &q, "--timeout", "soon", "x"],
        &["stat", &q, "--interval", "1"],
        &["bench", "--size", "0"],
        &["bench", "--size", "64KB"],
        &["rm"],
        &["frobnicate"],
        &["subs", "create", &q, "bad/name"],
        &["subs", "create", &q, ".hidden"],
        &["subs", "create", &q, &long_sub],
        &["subs", "create", &q, "s", "--lag-limit", "0"],
        &["subs", "create", &q, "s", "--lag-limit", "4KB"],
        &["subs", "create", &q, "s", "--from", "yesterday"],
        &["subs", "ls", "bad/queue"],
        &["subs", "rm", &q],
        &["recv", &q, "--subscription", "a/b"],
    ];
    for args in cases {
        let o = shmq(args);
        assert_eq!(o.status.code(), Some(2), "{args:?} should be a usage error; stderr: {}", stderr(&o));
        assert!(stderr(&o).contains("error"), "{args:?}: {}", stderr(&o));
    }
    // `subs` alone shows its subcommands, as `shmq` alone does, and is a usage error.
    let o = shmq(&["subs"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Usage: shmq subs <COMMAND>"), "{}", stderr(&o));
    // Nothing was created by the rejected commands.
    fails_with(1, &shmq(&["stat", &q]));
}

#[test]
fn recv_escapes_control_bytes_the_way_its_help_says() {
    let help = stdout(&ok(shmq(&["recv", "--help"])));
    assert!(help.contains(r"\x00") && help.contains(r"\n"), "{help}");
    let q = Name::new("escapes");
    ok(shmq(&["create", &q]));
    ok(shmq_with_input(&["send", &q], b"a\x00b\x1bc\x7fd\re\\f\xfe\n"));
    let text = stdout(&ok(shmq(&["recv", &q, "--timeout", "2s"])));
    assert_eq!(text, "a\\x00b\\x1bc\\x7fd\\re\\\\f\\xfe\n");
}

#[test]
fn a_bad_capacity_echoes_what_was_typed_and_never_shows_the_top_level_usage() {
    let q = Name::new("capacity");
    for (typed, not_echoed) in [("0", None), ("2TiB", Some("2199023255552")), ("3KiB", Some("3072"))] {
        let o = shmq(&["create", &q, "--capacity", typed]);
        fails_with(2, &o);
        let err = stderr(&o);
        assert!(err.contains(&format!("'{typed}'")), "{typed}: {err}");
        assert!(err.contains("power of two from 1KiB to 1TiB"), "{typed}: {err}");
        assert!(!err.contains("Usage: shmq <COMMAND>"), "{typed}: {err}");
        if let Some(n) = not_echoed {
            assert!(!err.contains(n), "{typed}: {err}");
        }
    }
    // A check that needs two options runs after parsing: it still quotes the value as typed
    // and shows the usage of `create`, not of `shmq`.
    let o = shmq(&["create", &q, "--capacity", "1KiB", "--max-message", "1KiB"]);
    fails_with(2, &o);
    let err = stderr(&o);
    assert!(err.contains("'1KiB'") && err.contains("half the capacity"), "{err}");
    assert!(err.contains("Usage: shmq create"), "{err}");
    fails_with(1, &shmq(&["stat", &q]));
}

#[test]
fn a_max_message_of_0_is_refused() {
    let q = Name::new("max0");
    let o = shmq(&["create", &q, "--max-message", "0"]);
    fails_with(2, &o);
    assert!(stderr(&o).contains("at least 1 byte"), "{}", stderr(&o));
    fails_with(1, &shmq(&["stat", &q]));
    ok(shmq(&["create", &q, "--max-message", "1"]));
}

/// Bytes free in `/dev/shm`.
fn shm_free_bytes() -> u64 {
    let path = std::ffi::CString::new("/dev/shm").unwrap();
    // SAFETY: all-zero bytes are a valid `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, writable `statvfs`.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0, "statvfs /dev/shm");
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn an_os_error_and_its_context_are_printed_once() {
    // 1 TiB: more than any /dev/shm this runs on holds, so creation fails with ENOSPC before
    // it allocates anything (tmpfs checks its size limit first). Guarded so that a machine
    // with a larger /dev/shm is not asked for a terabyte.
    let free = shm_free_bytes();
    assert!(free < 1 << 40, "/dev/shm has {free} bytes free: this test needs it smaller than 1 TiB");
    let q = Name::new("nospace");
    let o = shmq(&["create", &q, "--capacity", "1TiB"]);
    fails_with(1, &o);
    let err = stderr(&o);
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert_eq!(err.matches(&format!("{:?}", &*q)).count(), 1, "{err}");
    assert!(err.contains("df -h /dev/shm"), "{err}");
}

#[test]
fn a_missing_queue_exits_1_naming_it() {
    let q = Name::new("missing");
    for args in [vec!["send", &*q, "x"], vec!["recv", &*q, "--timeout", "10ms"], vec!["stat", &*q], vec!["rm", &*q]] {
        let o = shmq(&args);
        fails_with(1, &o);
        assert!(stderr(&o).contains(&*q), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn create_of_an_existing_queue_exits_1() {
    let q = Name::new("twice");
    ok(shmq(&["create", &q]));
    let o = shmq(&["create", &q]);
    fails_with(1, &o);
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
}

/// Parses an HdrHistogram percentile-distribution file: (value, percentile, count) rows.
fn parse_hgrm(text: &str) -> Vec<(f64, f64, u64)> {
    let mut rows = Vec::new();
    let mut footer = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("#[") {
            footer = true;
            continue;
        }
        if f.len() < 3 || f[0] == "Value" {
            continue;
        }
        let v: f64 = f[0].parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let p: f64 = f[1].parse().unwrap_or_else(|_| panic!("bad percentile in {line:?}"));
        let c: u64 = f[2].parse().unwrap_or_else(|_| panic!("bad count in {line:?}"));
        if f.len() == 4 {
            let inv: f64 = f[3].parse().unwrap();
            assert!((inv - 1.0 / (1.0 - p)).abs() / inv < 0.01, "{line:?}");
        }
        rows.push((v, p, c));
    }
    assert!(footer, "no footer");
    rows
}

#[test]
fn bench_quick_reports_every_transport_with_sane_numbers() {
    let dir = Scratch::new("bench");
    let json_path = dir.0.join("bench.json");
    let svg = dir.0.join("latency.svg");
    let hgrm = dir.0.join("hgrm");
    let o = ok(shmq(&[
        "bench",
        "--quick",
        "--size",
        "64,4KiB",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--hgrm",
        hgrm.to_str().unwrap(),
    ]));
    let table = stdout(&o);
    assert!(table.contains("vs spin-floor") && table.contains("vs fastest kernel"), "{table}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert!(v["machine"].is_object());
    let results = v["results"].as_array().unwrap();
    let single_cpu = v["machine"]["cpus"].as_u64().unwrap() < 2;
    let mut expected = vec![("shmq", "block"), ("futex-floor", "block"), ("pipe", "block"), ("uds", "block")];
    if !single_cpu {
        expected.extend([("shmq", "spin"), ("shmq", "adaptive"), ("spin-floor", "spin")]);
    }
    // "All" transports take in shmq-c when libshmq.so is next to the executable (as under
    // `cargo test --workspace`), and say on stderr why not otherwise.
    if Path::new(BIN).with_file_name("libshmq.so").exists() {
        expected.push(("shmq-c", "block"));
        if !single_cpu {
            expected.extend([("shmq-c", "spin"), ("shmq-c", "adaptive")]);
        }
    } else {
        assert!(stderr(&o).contains("transport shmq-c skipped"), "{}", stderr(&o));
    }
    for size in [64u64, 4096] {
        for (t, w) in &expected {
            let r = results
                .iter()
                .find(|r| r["transport"] == *t && r["wait"] == *w && r["size"] == size)
                .unwrap_or_else(|| panic!("no result for {t}/{w} at {size} B"));
            let l = &r["latency_ns"];
            let p = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("{t}/{w}: {k} missing"));
            assert!(p("p50") > 0, "{t}/{w} {size}: {l}");
            assert!(p("p50") <= p("p90") && p("p90") <= p("p99"), "{t}/{w} {size}: {l}");
            assert!(p("p99") <= p("p999") && p("p999") <= p("max"), "{t}/{w} {size}: {l}");
            assert!(r["round_trips"].as_u64().unwrap() > 0);
            let mps = r["throughput_msgs_per_s"].as_f64().unwrap();
            let mbps = r["throughput_mb_per_s"].as_f64().unwrap();
            assert!(mps > 0.0 && mbps > 0.0, "{t}/{w} {size}: {r}");
            assert!((mbps - mps * size as f64 / 1e6).abs() <= mbps * 1e-9 + 1e-9, "MB is 10^6 bytes");
        }
    }
    assert_eq!(results.len(), expected.len() * 2, "one result per (transport, wait, size)");
    let ratios = v["ratios"].as_array().unwrap();
    assert!(
        ratios
            .iter()
            .any(|r| r["baseline"] == "futex-floor" && r["wait"] == "block" && r["median"].as_f64().unwrap() > 0.0)
    );
    assert!(ratios.iter().any(|r| r["baseline"] == "fastest-kernel"));
    // Throughput against the floor ring, per size.
    let floor = if single_cpu { "futex-floor" } else { "spin-floor" };
    for size in [64u64, 4096] {
        assert!(
            ratios.iter().any(|r| r["baseline"] == floor
                && r["metric"] == "throughput_msgs_per_s"
                && r["size"] == size
                && r["median"].as_f64().unwrap() > 0.0),
            "no throughput ratio against {floor} at {size} B"
        );
    }
    assert!(table.contains("throughput") && table.contains("vs futex-floor"), "{table}");

    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"), "not an SVG");
    assert!(text.contains("<polyline") || text.contains("<path"), "no curves in the SVG");
    assert!(text.contains("shmq/block") && text.contains("pipe"), "legend missing");

    let files: Vec<PathBuf> = std::fs::read_dir(&hgrm).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), expected.len() * 2);
    for f in &files {
        check_hgrm(f);
    }
}

#[test]
fn bench_fanout_checks_every_subscription_and_reports_the_ratios() {
    let dir = Scratch::new("fanout");
    let json_path = dir.0.join("fanout.json");
    // Fixed counts: every run streams exactly 3000 messages, each checked by every
    // subscription (the bench fails if one is missing or duplicated).
    let o = ok(shmq(&[
        "bench",
        "--fanout",
        "--size",
        "64,1KiB",
        "--rounds",
        "2",
        "--messages",
        "3000",
        "--json",
        json_path.to_str().unwrap(),
    ]));
    let table = stdout(&o);
    assert!(table.contains("fanout4/baseline") && table.contains("members2/members1"), "{table}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["results"].as_array().unwrap().len(), 0, "no transport comparison with --fanout");
    let subs = &v["subscriptions"];
    assert_eq!(subs["wait"], "block");
    assert_eq!(subs["rounds"], 2);
    let results = subs["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "one result per (case, size)");
    for (case, subscriptions, members) in
        [("baseline", 1, 1), ("fanout4", 4, 4), ("members1", 1, 1), ("members2", 1, 2)]
    {
        for size in [64u64, 1024] {
            let r = results
                .iter()
                .find(|r| r["case"] == case && r["size"] == size)
                .unwrap_or_else(|| panic!("no result for {case} at {size} B"));
            assert_eq!(r["subscriptions"], subscriptions, "{r}");
            assert_eq!(r["members"], members, "{r}");
            assert_eq!(r["messages"], 6000, "{r}");
            let d = r["delivered_msgs_per_s"].as_f64().unwrap();
            assert!(d > 0.0 && r["sent_msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
            assert!((r["delivered_mb_per_s"].as_f64().unwrap() - d * size as f64 / 1e6).abs() <= d * 1e-9);
            assert_eq!(r["delivered_per_round"].as_array().unwrap().len(), 2, "{r}");
            for k in ["producer_waits_per_1k", "producer_wakes_per_1k", "member_waits_per_1k"] {
                assert!(r[k].as_f64().is_some_and(|x| x >= 0.0), "{k}: {r}");
            }
        }
    }
    let ratios = subs["ratios"].as_array().unwrap();
    for (name, size, target) in
        [("fanout4/baseline", 64u64, Some(0.6)), ("fanout4/baseline", 1024, None), ("members2/members1", 64, Some(0.8))]
    {
        let r = ratios
            .iter()
            .find(|r| r["ratio"] == name && r["size"] == size && r["metric"] == "delivered_msgs_per_s")
            .unwrap_or_else(|| panic!("no {name} at {size} B"));
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["target"].as_f64(), target, "{r}");
        assert_eq!(r["per_round"].as_array().unwrap().len(), 2, "{r}");
    }
    assert!(ratios.iter().any(|r| r["metric"] == "sent_msgs_per_s"));

    // Its messages carry their sequence number; it measures subscriptions only.
    fails_with(2, &shmq(&["bench", "--fanout", "--size", "4"]));
    fails_with(2, &shmq(&["bench", "--fanout", "--transport", "pipe"]));
}

#[test]
fn bench_durable_measures_the_queues_against_the_disk_floor_with_real_files() {
    // Real files on the disk the tests build on (not /tmp, which may be tmpfs).
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("durable.json");
    let files = dir.join("files");
    // Tiny counts: 384 messages (12 floor batches) per stream (each checked in order by its receiver), 100
    // round trips, 20 blocking sends (each waits for an fdatasync), W = 8.
    let o = shmq(&[
        "bench",
        "--durable",
        "--size",
        "64",
        "--rounds",
        "1",
        "--messages",
        "384",
        "--batch",
        "8",
        "--dir",
        files.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    if o.status.code() != Some(0) && stderr(&o).contains("tmpfs") {
        eprintln!("skipped: the target directory is on tmpfs");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let table = stdout(&ok(o));
    assert!(table.contains("disk-floor-always") && table.contains("write") && table.contains("fdatasync"), "{table}");
    // Every file of the runs is gone: the floors' files and FIFOs, the queues' logs.
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 0, "files left in {}", files.display());

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["run"]["rounds"], 1);
    assert_eq!(v["durable"]["producers"], 4);
    assert_eq!(v["durable"]["wait_durable_every"], 8);
    assert_eq!(v["durable"]["floor_batch"], 32);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "one result per case");
    for (transport, mode, producers, messages) in [
        ("disk-floor-never", "batched", 1, 384),
        ("disk-floor-always", "batched", 1, 384),
        ("shmq", "stream", 1, 384),
        ("shmq-durable-never", "stream", 1, 384),
        ("shmq-durable-always", "pipelined", 4, 384),
        ("shmq-durable-always", "blocking", 1, 20),
    ] {
        let r = results
            .iter()
            .find(|r| r["transport"] == transport && r["mode"] == mode)
            .unwrap_or_else(|| panic!("no result for {transport} {mode}"));
        assert_eq!(r["size"], 64, "{r}");
        assert_eq!(r["producers"], producers, "{r}");
        assert_eq!(r["messages"], messages, "{r}");
        let rate = r["throughput_msgs_per_s"].as_f64().unwrap();
        assert!(rate > 0.0, "{r}");
        assert!((r["throughput_mb_per_s"].as_f64().unwrap() - rate * 64.0 / 1e6).abs() <= rate * 1e-9, "{r}");
        let l = &r["latency_ns"];
        let p: Vec<u64> = ["p50", "p90", "p99", "p999", "max"].iter().map(|k| l[k].as_u64().unwrap()).collect();
        assert!(p[0] > 0 && p.windows(2).all(|w| w[0] <= w[1]), "{r}");
        let synced = transport.ends_with("always");
        assert_eq!(r["msgs_per_sync"].is_number(), synced, "{r}");
        if synced {
            assert!(r["syncs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert_eq!(r["sync_latency_ns"].is_object(), transport == "shmq-durable-always", "{r}");
        // Every case's processes used some CPU for their messages.
        assert!(r["cpu_ns_per_msg"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The floor syncs once per batch of B = 4 x W records.
    let floor = results.iter().find(|r| r["transport"] == "disk-floor-always").unwrap();
    assert!((floor["msgs_per_sync"].as_f64().unwrap() - 32.0).abs() < 1e-9, "{floor}");
    // Blocking sends each wait for their own sync.
    let blocking = results.iter().find(|r| r["mode"] == "blocking").unwrap();
    assert!(blocking["msgs_per_sync"].as_f64().unwrap() <= 1.0 + 1e-9, "{blocking}");
    let ratios = v["ratios"].as_array().unwrap();
    for (name, metric, target) in [
        ("shmq-durable-never/shmq", "latency_p50", Some(1.5)),
        ("shmq-durable-never/shmq", "throughput_msgs_per_s", None),
        ("shmq-durable-always-pipelined/disk-floor-always", "throughput_msgs_per_s", Some(0.8)),
    ] {
        let r = ratios
            .iter()
            .find(|r| r["ratio"] == name && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no {name} {metric}"));
        assert!(r["median"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["target"].as_f64(), target, "{r}");
        assert_eq!(r["met"].is_boolean(), target.is_some(), "{r}");
    }

    // Memory is no disk: tmpfs is refused unless allowed; tags and times need 16 bytes.
    if std::fs::metadata("/dev/shm").is_ok() {
        let o = shmq(&["bench", "--durable", "--dir", "/dev/shm", "--messages", "8", "--rounds", "1"]);
        fails_with(1, &o);
        assert!(stderr(&o).contains("tmpfs") && stderr(&o).contains("--allow-tmpfs"), "{}", stderr(&o));
    }
    fails_with(2, &shmq(&["bench", "--durable", "--size", "8"]));
    fails_with(2, &shmq(&["bench", "--dir", "x"]));
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_hgrm(f: &Path) {
    let rows = parse_hgrm(&std::fs::read_to_string(f).unwrap());
    assert!(rows.len() > 5, "{}: too few rows", f.display());
    for w in rows.windows(2) {
        assert!(w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2, "{}: not monotonic", f.display());
    }
    assert_eq!(rows.last().unwrap().1, 1.0, "{}: does not end at 100%", f.display());
}

/// The subscription `sub` in a `subs ls --json` document.
fn sub_of<'a>(ls: &'a Value, sub: &str) -> Option<&'a Value> {
    ls["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == sub)
}

/// Polls `shmq subs ls QUEUE --json` until `ready` holds (at most 30 s); returns that listing.
#[track_caller]
fn wait_for_subs(q: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = json(&ok(shmq(&["subs", "ls", q, "--json"])));
        if ready(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}; last listing: {v:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `sub` has a live member whose pid is `pid`.
fn has_member(ls: &Value, sub: &str, pid: u32) -> bool {
    sub_of(ls, sub)
        .is_some_and(|s| s["members"].as_array().unwrap().iter().any(|m| m["pid"] == pid && m["alive"] == true))
}

#[test]
fn subs_create_ls_rm_round_trip() {
    let q = Name::new("subs");
    ok(shmq(&["create", &q, "--capacity", "64KiB"]));
    let o = stdout(&ok(shmq(&["subs", "create", &q, "audit"])));
    assert!(o.contains("\"audit\"") && o.contains("created") && o.contains("lag limit none"), "{o}");
    let o = stdout(&ok(shmq(&["subs", "create", &q, "live", "--lag-limit", "4KiB", "--from", "now"])));
    assert!(o.contains("lag limit 4 KiB"), "{o}");

    // Three messages of the same size: the lag estimate in messages is exact.
    ok(shmq(&["send", &q, "one", "two", "six"]));
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["queue"], &*q);
    let names: Vec<&str> = v["subscriptions"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "audit", "live"]);
    for name in names {
        let s = sub_of(&v, name).unwrap();
        // Each record: a 16-byte header and 3 bytes rounded up to 8.
        assert_eq!(s["lag_bytes"], 3 * 24, "{name}: {s}");
        assert_eq!(s["lag_messages"], 3, "{name}: {s}");
        assert_eq!(s["position"], 0, "{name}: {s}");
        assert_eq!(s["detached"], false, "{name}: {s}");
        assert_eq!(s["lapped"], 0, "{name}: {s}");
        assert_eq!(s["missed_bytes"], 0, "{name}: {s}");
        assert_eq!(s["redelivered"], 0, "{name}: {s}");
        assert_eq!(s["received"]["messages"], 0, "{name}: {s}");
        assert_eq!(s["members"], serde_json::json!([]), "{name}: {s}");
    }
    assert!(sub_of(&v, "default").unwrap()["lag_limit"].is_null());
    assert!(sub_of(&v, "audit").unwrap()["lag_limit"].is_null());
    assert_eq!(sub_of(&v, "live").unwrap()["lag_limit"], 4096);

    let text = stdout(&ok(shmq(&["subs", "ls", &q])));
    assert!(text.contains("3 subscription(s)") && text.contains("audit") && text.contains("4 KiB"), "{text}");
    // `stat` lists them too, in both forms.
    let stat = json(&ok(shmq(&["stat", &q, "--json"])));
    assert_eq!(stat["subscriptions"].as_array().unwrap().len(), 3, "{stat:#}");
    assert_eq!(stat["subscriptions"][2]["name"], "live");
    assert_eq!(stat["subscriptions"][2]["lag_limit"], 4096);
    let text = stdout(&ok(shmq(&["stat", &q])));
    assert!(text.contains("subscriptions") && text.contains("audit") && text.contains("live"), "{text}");

    ok(shmq(&["subs", "rm", &q, "audit", "live"]));
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["subscriptions"][0]["name"], "default");

    // Removing one that is gone fails, names it, and still removes the others listed.
    ok(shmq(&["subs", "create", &q, "other"]));
    let o = shmq(&["subs", "rm", &q, "audit", "other"]);
    fails_with(1, &o);
    assert!(stderr(&o).contains("no subscription \"audit\""), "{}", stderr(&o));
    assert!(sub_of(&json(&ok(shmq(&["subs", "ls", &q, "--json"]))), "other").is_none());

    // The default subscription can go too; then plain `recv` finds nothing to read.
    ok(shmq(&["subs", "rm", &q, "default"]));
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    assert_eq!(v["subscriptions"], serde_json::json!([]), "{v:#}");
    assert!(stdout(&ok(shmq(&["subs", "ls", &q]))).contains("none"));
    let o = shmq(&["recv", &q, "--timeout", "0"]);
    fails_with(1, &o);
    assert!(stderr(&o).contains("no subscription \"default\""), "{}", stderr(&o));
}

#[test]
fn subs_create_is_idempotent_and_refuses_other_options() {
    let q = Name::new("subs-idem");
    ok(shmq(&["create", &q]));
    ok(shmq(&["subs", "create", &q, "s", "--lag-limit", "8KiB"]));
    let o = stdout(&ok(shmq(&["subs", "create", &q, "s", "--lag-limit", "8192"])));
    assert!(o.contains("exists already"), "{o}");
    for other in [&["--lag-limit", "16KiB"][..], &[]] {
        let args: Vec<&str> = ["subs", "create", &*q, "s"].iter().chain(other).copied().collect();
        let o = shmq(&args);
        fails_with(1, &o);
        let err = stderr(&o);
        assert!(err.contains("\"s\"") && err.contains(&*q) && err.contains("lag limit"), "{other:?}: {err}");
    }
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 2, "one \"s\" besides the default: {v:#}");
    assert_eq!(sub_of(&v, "s").unwrap()["lag_limit"], 8192);

    // A missing queue is a runtime error that names it, for each subcommand.
    let gone = Name::new("subs-missing");
    for args in [
        vec!["subs", "create", &*gone, "s"],
        vec!["subs", "ls", &*gone],
        vec!["subs", "rm", &*gone, "s"],
        vec!["recv", &*gone, "--subscription", "s", "--timeout", "0"],
    ] {
        let o = shmq(&args);
        fails_with(1, &o);
        assert!(stderr(&o).contains(&*gone), "{args:?}: {}", stderr(&o));
    }
    let o = shmq(&["recv", &q, "--subscription", "nope", "--timeout", "0"]);
    fails_with(1, &o);
    assert!(stderr(&o).contains("no subscription \"nope\""), "{}", stderr(&o));
}

#[test]
fn recv_subscription_gets_what_send_sent_and_so_does_every_other_subscription() {
    let q = Name::new("subs-fan");
    ok(shmq(&["create", &q, "--capacity", "64KiB"]));
    ok(shmq(&["subs", "create", &q, "a"]));
    ok(shmq(&["subs", "create", &q, "b", "--lag-limit", "32KiB"]));
    let ra = spawn_shmq(&["recv", &q, "--subscription", "a", "-n", "3", "--timeout", "60s"]);
    let rb = spawn_shmq(&["recv", &q, "-s", "b", "-n", "3", "--timeout", "60s", "--json"]);
    let (pa, pb) = (ra.id(), rb.id());
    // Both have joined (and wait) before anything is sent.
    let v = wait_for_subs(&q, "both receivers joined", |v| has_member(v, "a", pa) && has_member(v, "b", pb));
    assert_eq!(sub_of(&v, "a").unwrap()["members"].as_array().unwrap().len(), 1, "{v:#}");
    let text = stdout(&ok(shmq(&["subs", "ls", &q])));
    assert!(text.contains(&format!("member pid {pa} alive")), "{text}");

    ok(shmq(&["send", &q, "one", "two", "three"]));
    let a = ok(wait_with_deadline(ra));
    assert_eq!(stdout(&a), "one\ntwo\nthree\n");
    let b = ok(wait_with_deadline(rb));
    let got: Vec<String> = stdout(&b)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["one", "two", "three"]);
    // The default subscription still has them all, for plain `recv`.
    assert_eq!(stdout(&ok(shmq(&["recv", &q, "-n", "3", "--timeout", "5s"]))), "one\ntwo\nthree\n");

    let v = json(&ok(shmq(&["stat", &q, "--json"])));
    for s in v["subscriptions"].as_array().unwrap() {
        assert_eq!(s["received"]["messages"], 3, "{s}");
        assert_eq!(s["lag_bytes"], 0, "{s}");
        // Receivers that ended normally left their subscriptions.
        assert_eq!(s["members"], serde_json::json!([]), "{s}");
    }
}

#[test]
fn two_recv_members_of_one_subscription_share_its_messages() {
    let q = Name::new("subs-share");
    ok(shmq(&["create", &q, "--capacity", "64KiB"]));
    ok(shmq(&["subs", "create", &q, "work"]));
    ok(shmq(&["subs", "rm", &q, "default"]));
    let members: Vec<Child> =
        (0..2).map(|_| spawn_shmq(&["recv", &q, "-s", "work", "--follow", "--timeout", "2s"])).collect();
    let pids: Vec<u32> = members.iter().map(Child::id).collect();
    wait_for_subs(&q, "both members joined", |v| pids.iter().all(|&p| has_member(v, "work", p)));
    let lines: Vec<String> = (0..200).map(|i| format!("job {i}")).collect();
    ok(shmq_with_input(&["send", &q, "--timeout", "10s"], (lines.join("\n") + "\n").as_bytes()));
    let mut all = Vec::new();
    for m in members {
        let o = wait_with_deadline(m);
        // A member may have got nothing (the other claimed every batch first): then it says
        // so and exits 1.
        if stdout(&o).is_empty() {
            fails_with(1, &o);
        } else {
            ok(o.clone());
        }
        let got: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
        // Each member's share keeps the sending order.
        let idx: Vec<u32> = got.iter().map(|l| l.strip_prefix("job ").unwrap().parse().unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "out of order: {idx:?}");
        all.extend(got);
    }
    all.sort_by_key(|l| l.strip_prefix("job ").unwrap().parse::<u32>().unwrap());
    assert_eq!(all, lines, "every message exactly once over both members");
}

#[test]
fn recv_subscription_reports_a_lap_on_stderr_and_goes_on() {
    let q = Name::new("subs-lap");
    ok(shmq(&["create", &q, "--capacity", "1KiB", "--max-message", "256"]));
    ok(shmq(&["subs", "create", &q, "slow", "--lag-limit", "256"]));
    // Without the default subscription nobody holds the producers back: the flood laps "slow".
    ok(shmq(&["subs", "rm", &q, "default"]));
    let flood = format!("{}\n", "x".repeat(40)).repeat(100);
    ok(shmq_with_input(&["send", &q, "--timeout", "10s"], flood.as_bytes()));
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    let s = sub_of(&v, "slow").unwrap();
    assert_eq!(s["detached"], true, "{s}");
    assert_eq!(s["lapped"], 1, "{s}");
    assert!(stdout(&ok(shmq(&["subs", "ls", &q]))).contains("detached"));

    let child = spawn_shmq(&["recv", &q, "--subscription", "slow", "--timeout", "60s"]);
    let pid = child.id();
    // Its first receive reports the lap and rejoins at the newest message; then it waits.
    wait_for_subs(&q, "the receiver rejoined", |v| {
        has_member(v, "slow", pid) && sub_of(v, "slow").unwrap()["detached"] == false
    });
    ok(shmq(&["send", &q, "after the lap"]));
    let o = ok(wait_with_deadline(child));
    assert_eq!(stdout(&o), "after the lap\n");
    let v = json(&ok(shmq(&["subs", "ls", &q, "--json"])));
    let missed = sub_of(&v, "slow").unwrap()["missed_bytes"].as_u64().unwrap();
    // 100 records of 56 bytes, less the 256 bytes at most a lag limit of 256 leaves unread.
    assert!(missed >= 100 * 56 - 1024, "missed {missed}: {v:#}");
    let err = stderr(&o);
    assert!(err.contains(&format!("missed {missed} bytes")) && err.contains("\"slow\""), "{err}");
}

#[test]
fn a_waiting_member_exits_1_when_its_subscription_is_removed() {
    let q = Name::new("subs-removed");
    ok(shmq(&["create", &q]));
    ok(shmq(&["subs", "create", &q, "s"]));
    let child = spawn_shmq(&["recv", &q, "-s", "s", "--timeout", "60s"]);
    let pid = child.id();
    wait_for_subs(&q, "the member joined", |v| has_member(v, "s", pid));
    ok(shmq(&["subs", "rm", &q, "s"]));
    let o = wait_with_deadline(child);
    fails_with(1, &o);
    assert!(stderr(&o).contains("subscription \"s\"") && stderr(&o).contains("removed"), "{}", stderr(&o));
    // The queue itself is still there.
    ok(shmq(&["stat", &q]));
}
