//! The C ABI as C programs use it: the test programs in `tests/c/` and the examples in
//! `examples/` are compiled with the system `cc` against the checked-in `include/shmq.h`
//! and the `libshmq.a` (or `libshmq.so`) that cargo built for this test run, then run as
//! real processes on real shared memory. Each C program checks its own cases and exits 0
//! only if all passed; here we also check its report.
//!
//! Every program runs once as built and once under `-fsanitize=address,undefined`, where
//! any sanitizer report fails the test. The interop tests pair a C process with the Rust
//! process `shmq-c-interop`; the install test runs `make install` into a temporary prefix
//! and builds an example with `pkg-config`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmq_core::{Mode, Options, Queue, Subscription, SubscriptionOptions};

/// What the static library needs (`rustc --print native-static-libs`); the Makefile's
/// `Libs.private` says the same.
const LIBS_PRIVATE: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

/// Only a hang reaches this: the programs bound each of their own waits.
const HANG_GUARD: Duration = Duration::from_secs(600);

const SANITIZE: &[&str] = &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/deps/`, where this test runs from and where rustc writes the
/// libraries of this crate for this run (`libshmq.a`, `libshmq.so`: cargo copies them up
/// to `target/<profile>/` only for `cargo build`, so the copies there may be stale).
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("deps dir").to_path_buf()
}

/// `target/<profile>`.
fn profile_dir() -> PathBuf {
    deps_dir().parent().expect("profile dir").to_path_buf()
}

fn built_library(file: &str) -> PathBuf {
    let lib = deps_dir().join(file);
    assert!(
        lib.exists(),
        "{} is missing: cargo builds it with this test (crate-type in bindings/c/Cargo.toml)",
        lib.display()
    );
    lib
}

/// A scratch directory for this test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = profile_dir().join("shmq-c-tests").join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    Plain,
    Sanitized,
}

/// Compiles `source` (relative to the crate) into `dir`, linked with libshmq.a.
fn compile(source: &str, dir: &Path, build: Build) -> PathBuf {
    let stem = Path::new(source).file_stem().unwrap().to_string_lossy().into_owned();
    let exe = dir.join(if build == Build::Sanitized { format!("{stem}-asan") } else { stem });
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg("-I")
        .arg(crate_dir().join("tests/c"))
        .arg(crate_dir().join(source));
    if build == Build::Sanitized {
        cmd.args(SANITIZE);
    }
    cmd.arg(built_library("libshmq.a")).args(LIBS_PRIVATE).arg("-o").arg(&exe);
    let out = cmd.output().expect("run cc");
    assert!(out.status.success(), "cc {source} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

/// Waits for `child` (bounded by [`HANG_GUARD`]) and collects its output.
fn finish(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!("{what} hung; its stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(exe: &Path, args: &[&str], build: Build) -> Child {
    spawn_with(exe, args, build, &[])
}

fn spawn_with(exe: &Path, args: &[&str], build: Build, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.envs(env.iter().copied());
    if build == Build::Sanitized {
        cmd.env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:exitcode=86")
            .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:exitcode=87");
    }
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()))
}

/// Checks that a run exited 0, printed `expect`, and (sanitized) reported nothing.
fn check(out: &Output, what: &str, expect: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    for report in ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "panicked"] {
        assert!(!stderr.contains(report), "{what}: {report}\n{stderr}");
    }
    assert!(stdout.contains(expect), "{what} did not print {expect:?}:\n{stdout}");
    stdout
}

/// Builds and runs one C test program, which must end by printing `<stem>: all passed`.
fn run_c_test(source: &str, args: &[&str], build: Build) -> String {
    let scratch = Scratch::new("prog");
    let exe = compile(source, &scratch.0, build);
    let what = format!("{source} {}", args.join(" "));
    let child = spawn(&exe, args, build);
    let pid = child.id();
    let out = finish(child, &what);
    remove_leftover_queues(pid);
    let stem = Path::new(source).file_stem().unwrap().to_string_lossy().into_owned();
    check(&out, &what, &format!("{stem}: all passed"))
}

/// Removes the queues a C test program (`pid`) left behind if it died before its own
/// cleanup: their names are `ctest-<tag>-<pid>-<n>`.
fn remove_leftover_queues(pid: u32) {
    let infix = format!("-{pid}-");
    for name in Queue::list().unwrap_or_default() {
        if name.starts_with("ctest-") && name.contains(&infix) {
            let _ = Queue::remove(&name);
        }
    }
}

macro_rules! c_test {
    ($(#[$attr:meta])* $plain:ident, $sanitized:ident, $source:expr, [$($arg:expr),*], [$($line:expr),*]) => {
        #[test]
        $(#[$attr])*
        fn $plain() {
            let out = run_c_test($source, &[$($arg),*], Build::Plain);
            $( assert!(out.contains($line), "missing {:?} in:\n{out}", $line); )*
        }

        #[test]
        $(#[$attr])*
        fn $sanitized() {
            let out = run_c_test($source, &[$($arg),*], Build::Sanitized);
            $( assert!(out.contains($line), "missing {:?} in:\n{out}", $line); )*
        }
    };
}

c_test!(
    lifecycle_options_and_os_error_codes,
    lifecycle_under_sanitizers,
    "tests/c/lifecycle.c",
    [],
    [
        "ok errno_is_preserved",
        "ok refused_access_is_permission",
        "ok garbage_magic_is_corrupt_and_other_version_incompatible",
        "ok other_os_errors_are_io",
        "ok removed_queue_is_closed_after_draining"
    ]
);

c_test!(
    queue_operations_fill_drain_zero_copy_and_misuse,
    queue_operations_under_sanitizers,
    "tests/c/queue_ops.c",
    [],
    [
        "ok fill_until_full_then_drain_in_order spsc",
        "ok fill_until_full_then_drain_in_order mpsc",
        "ok too_small_buffer_leaves_the_message mpsc",
        "ok reserve_commit_and_abort mpsc",
        "ok peek_and_release spsc",
        "ok zero_length_messages_are_valid mpsc",
        "ok misuse_is_refused_and_harmless spsc"
    ]
);

c_test!(
    forked_producer_streams_300k_random_messages_spsc,
    stream_spsc_under_sanitizers,
    "tests/c/stream.c",
    ["spsc", "300000"],
    ["ok stream spsc: 300000 messages"]
);

c_test!(
    forked_producer_streams_300k_random_messages_mpsc,
    stream_mpsc_under_sanitizers,
    "tests/c/stream.c",
    ["mpsc", "300000"],
    ["ok stream mpsc: 300000 messages"]
);

c_test!(
    four_forked_producers_keep_their_own_order,
    four_producers_under_sanitizers,
    "tests/c/mpsc.c",
    ["50000"],
    ["ok mpsc: 4 producers x 50000 messages"]
);

c_test!(
    blocked_waiters_are_woken_by_other_processes,
    wakeups_under_sanitizers,
    "tests/c/wakeup.c",
    [],
    [
        "ok consumer_is_woken_by_a_message block timeout forever",
        "ok consumer_is_woken_by_remove adaptive",
        "ok producer_is_woken_by_space block"
    ]
);

c_test!(
    killed_participants_free_their_slots,
    kills_under_sanitizers,
    "tests/c/kill9.c",
    [],
    [
        "ok killed_consumer_frees_the_slot spsc",
        "ok killed_consumer_frees_the_slot mpsc",
        "ok killed_spsc_producer_frees_the_slot"
    ]
);

/// Without membarrier (old kernels, seccomp) the re-entry guard falls back to an atomic
/// exchange per call: the same misuse is refused the same way.
#[test]
fn misused_handles_are_refused_without_membarrier_too() {
    let scratch = Scratch::new("nomembarrier");
    let exe = compile("tests/c/handles.c", &scratch.0, Build::Plain);
    let child = spawn_with(&exe, &[], Build::Plain, &[("SHMQ_C_NO_MEMBARRIER", "1")]);
    let pid = child.id();
    let out = finish(child, "handles.c without membarrier");
    remove_leftover_queues(pid);
    let out = check(&out, "handles.c without membarrier", "handles: all passed");
    assert!(out.contains("ok two_threads_on_one_consumer mpsc: 200000 messages once each"), "{out}");
}

/// The sanitizer runs can fail: the same flags catch a planted overflow.
#[test]
fn sanitizer_runs_catch_a_planted_overflow() {
    let scratch = Scratch::new("canary");
    let src = scratch.0.join("canary.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n#include \"shmq.h\"\nint main(int argc, char **argv) {\n  (void)argv;\n  \
         char *p = malloc(4);\n  p[argc + 3] = (char)shmq_abi_version();\n  free(p);\n  return 0;\n}\n",
    )
    .unwrap();
    let exe = scratch.0.join("canary");
    let status = Command::new("cc")
        .args(["-g", "-O0"])
        .args(SANITIZE)
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg(built_library("libshmq.a"))
        .args(LIBS_PRIVATE)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("cc");
    assert!(status.success());
    let out = finish(spawn(&exe, &[], Build::Sanitized), "canary");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR: AddressSanitizer: heap-buffer-overflow"));
}

/// A queue for the interop tests, removed when dropped.
struct TestQueue(String);

impl TestQueue {
    fn new(tag: &str) -> TestQueue {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("ctest-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Queue::create(&name, Options::new().mode(Mode::Spsc).capacity(1 << 16).max_message(4096)).expect("create");
        TestQueue(name)
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let _ = Queue::remove(&self.0);
    }
}

const INTEROP_COUNT: &str = "50000";
const INTEROP_MAX_LEN: &str = "4000";

fn interop(producer_is_rust: bool, seed: &str) {
    let q = TestQueue::new("interop");
    let scratch = Scratch::new("interop");
    let c_exe = compile("tests/c/interop.c", &scratch.0, Build::Plain);
    let rust_exe = PathBuf::from(env!("CARGO_BIN_EXE_shmq-c-interop"));
    let (produce, consume) = if producer_is_rust { (&rust_exe, &c_exe) } else { (&c_exe, &rust_exe) };
    let args = |role: &'static str| [role, q.0.as_str(), INTEROP_COUNT, seed, INTEROP_MAX_LEN];
    let consumer = spawn(consume, &args("consume"), Build::Plain);
    let producer = spawn(produce, &args("produce"), Build::Plain);
    let p = finish(producer, "producer");
    let c = finish(consumer, "consumer");
    assert!(p.status.success(), "producer failed: {}", String::from_utf8_lossy(&p.stderr));
    check(&c, "consumer", &format!("consumed {INTEROP_COUNT}"));
}

#[test]
fn rust_producer_feeds_a_c_consumer() {
    interop(true, "7");
}

#[test]
fn c_producer_feeds_a_rust_consumer() {
    interop(false, "8");
}

fn compile_example(name: &str, dir: &Path) -> PathBuf {
    // Exactly as the README says: plain cc, the header, the static library.
    let exe = dir.join(name);
    let out = Command::new("cc")
        .arg("-O2")
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("examples").join(format!("{name}.c")))
        .arg(built_library("libshmq.a"))
        .args(LIBS_PRIVATE)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("cc");
    assert!(out.status.success(), "cc examples/{name}.c:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn queue_exists(name: &str) -> bool {
    Path::new("/dev/shm").join(format!("shmq.{name}")).exists()
}

/// Runs the example consumer and producer on one queue; the consumer removes it.
fn run_producer_and_consumer(producer: &Path, consumer: &Path, env: &[(&str, &OsStr)]) {
    static N: AtomicU32 = AtomicU32::new(0);
    let q = format!("ctest-example-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let start = |exe: &Path, args: &[&str]| {
        let mut cmd = Command::new(exe);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn example")
    };
    let c = start(consumer, &[&q, "500"]);
    let p = start(producer, &[&q, "500"]);
    let p = finish(p, "example producer");
    let c = finish(c, "example consumer");
    let _ = Queue::remove(&q);
    check(&p, "example producer", "sent 500 messages");
    let out = check(&c, "example consumer", "received 500 messages");
    assert!(out.starts_with("message 0\nmessage 1\n"), "{out}");
    assert!(out.contains("\nmessage 499\n"), "{out}");
    assert!(!queue_exists(&q), "the consumer example removes its queue");
}

fn percentiles(report: &str) -> Vec<u64> {
    ["p50:", "p90:", "p99:", "p99.9:", "max:"]
        .iter()
        .map(|label| {
            let line =
                report.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label}"));
            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad line {line:?}"))
        })
        .collect()
}

#[test]
fn examples_build_with_plain_cc_and_run() {
    let scratch = Scratch::new("examples");
    let producer = compile_example("producer", &scratch.0);
    let consumer = compile_example("consumer", &scratch.0);
    let pingpong = compile_example("pingpong", &scratch.0);
    // Run against subscriptions by `subscriber_example_fans_out`; built here in any case.
    compile_example("subscriber", &scratch.0);
    run_producer_and_consumer(&producer, &consumer, &[]);

    // The instruction-count workload checks what it received (every byte of every message).
    let icount = compile_example("icount", &scratch.0);
    for how in ["recv", "peek"] {
        for size in ["0", "8", "65536"] {
            let out = finish(spawn(&icount, &[size, "2500", how], Build::Plain), "icount");
            check(&out, "icount", &format!("2500 messages of {size} bytes sent and received ({how})"));
        }
    }
    for args in [&["8", "7"][..], &["8", "2500", "memcpy"]] {
        let bad = finish(spawn(&icount, args, Build::Plain), "icount usage");
        assert_eq!(bad.status.code(), Some(2));
    }

    for wait in ["adaptive", "block"] {
        let out = finish(
            spawn(&pingpong, &["--wait", wait, "--round-trips", "2000", "--warmup", "200"], Build::Plain),
            "pingpong",
        );
        let report = check(&out, "pingpong", &format!("wait {wait}, 2000 round trips"));
        let p = percentiles(&report);
        assert!(p.windows(2).all(|w| w[0] <= w[1]) && p[0] > 0, "percentiles out of order: {report}");
    }
    let bad = finish(spawn(&pingpong, &["--size", "4"], Build::Plain), "pingpong usage");
    assert_eq!(bad.status.code(), Some(2));
}

/// The subscriber example: two subscriptions of one queue each print every message the
/// producer example sends, in order and with the same ids; a subscription that does not
/// exist is created, and `--remove` removes it at the end.
#[test]
fn subscriber_example_fans_out() {
    let scratch = Scratch::new("subscriber");
    let producer = compile_example("producer", &scratch.0);
    let subscriber = compile_example("subscriber", &scratch.0);
    static N: AtomicU32 = AtomicU32::new(0);
    let q = format!("ctest-subscriber-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    Queue::create(&q, Options::new()).expect("create");
    // Made before anything is sent, so that both see every message (the example creates
    // its subscription too, but may do so after the producer has started).
    for s in ["audit", "billing"] {
        Subscription::create(&q, s, SubscriptionOptions::new()).expect("create subscription");
    }
    let readers: Vec<Child> =
        ["audit", "billing"].iter().map(|s| spawn(&subscriber, &[&q, s, "200"], Build::Plain)).collect();
    let p = finish(spawn(&producer, &[&q, "200"], Build::Plain), "producer example");
    check(&p, "producer example", "sent 200 messages");
    let mut seen = Vec::new();
    for (child, s) in readers.into_iter().zip(["audit", "billing"]) {
        let out = finish(child, "subscriber example");
        let out = check(&out, "subscriber example", &format!("received 200 messages from {q}/{s}"));
        let ids: Vec<u64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("id "))
            .enumerate()
            .map(|(i, rest)| {
                let (id, payload) = rest.split_once(": ").unwrap_or_else(|| panic!("bad line {rest:?}"));
                assert_eq!(payload, format!("message {i}"), "{s}: {out}");
                id.parse().unwrap_or_else(|_| panic!("bad id in {rest:?}"))
            })
            .collect();
        assert_eq!(ids.len(), 200, "{s}: {out}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{s}: ids not increasing: {out}");
        seen.push(ids);
    }
    assert_eq!(seen[0], seen[1], "the two subscriptions saw different ids");

    let names = |q: &str| Subscription::list(q).expect("list").into_iter().map(|s| s.name).collect::<Vec<_>>();
    let out = finish(spawn(&subscriber, &[&q, "fresh", "0"], Build::Plain), "subscriber example");
    check(&out, "subscriber example", "received 0 messages");
    assert!(names(&q).contains(&"fresh".to_owned()), "{:?}", names(&q));
    let out = finish(spawn(&subscriber, &["--remove", &q, "fresh", "0"], Build::Plain), "subscriber example");
    check(&out, "subscriber example", "received 0 messages");
    assert!(!names(&q).contains(&"fresh".to_owned()), "{:?}", names(&q));
    let _ = Queue::remove(&q);
}

/// The examples open an existing queue whatever its options, and create one with the
/// options their flags give; a queue that exists with other options than the flags ask
/// for is an error that says why.
#[test]
fn examples_open_existing_queues_and_take_options_from_flags() {
    let scratch = Scratch::new("example-flags");
    let producer = compile_example("producer", &scratch.0);
    let consumer = compile_example("consumer", &scratch.0);
    let run = |exe: &Path, args: &[&str]| finish(spawn(exe, args, Build::Plain), "example");

    // An SPSC queue with non-default options, made by someone else: no flags needed.
    let q = TestQueue::new("flags-existing");
    let out = run(&producer, &[&q.0, "4"]);
    check(&out, "producer on an existing spsc queue", "sent 4 messages");
    let out = run(&consumer, &[&q.0, "4"]);
    check(&out, "consumer on an existing spsc queue", "received 4 messages");

    // Flags create the queue with those options.
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("ctest-flags-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let flags = ["--mode", "spsc", "--capacity", "64K", "--max-message", "1024"];
    let args: Vec<&str> = flags.iter().copied().chain([name.as_str(), "3"]).collect();
    let out = run(&producer, &args);
    check(&out, "producer with flags", "sent 3 messages");
    let config = Queue::inspect(&name).expect("the producer created the queue").config;
    assert_eq!((config.mode, config.capacity, config.max_message), (Mode::Spsc, 64 << 10, 1024));

    // Flags that contradict the existing queue: refused, with the reason.
    let out = run(&producer, &["--mode", "mpsc", &name, "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exists as spsc with capacity 65536"), "{stderr}");

    let out = run(&consumer, &args);
    check(&out, "consumer with the same flags", "received 3 messages");
    let _ = Queue::remove(&name);

    for bad in [&["--mode", "xpsc", "q"][..], &["--capacity", "12Q", "q"], &["--frobnicate", "1", "q"], &[]] {
        assert_eq!(run(&producer, bad).status.code(), Some(2), "{bad:?}");
        assert_eq!(run(&consumer, bad).status.code(), Some(2), "{bad:?}");
    }
}

fn readelf_dynamic(file: &Path) -> String {
    let out = Command::new("readelf").arg("-d").arg(file).output().expect("run readelf (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shared_library_carries_the_abi_soname() {
    let dynamic = readelf_dynamic(&built_library("libshmq.so"));
    let want = format!("Library soname: [libshmq.so.{}]", shmq::SHMQ_ABI_VERSION);
    assert!(dynamic.contains(&want), "no {want:?} in:\n{dynamic}");
}

#[test]
fn make_install_then_pkg_config_builds_an_example() {
    let scratch = Scratch::new("install");
    let prefix = scratch.0.join("prefix");
    // The libraries cargo built for this run; CARGO=true skips the (release) cargo build.
    let out = Command::new("make")
        .arg("-C")
        .arg(crate_dir())
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("OUT={}", deps_dir().display()))
        .arg(format!("BUILD={}", scratch.0.join("build").display()))
        .arg(format!("PCFILE={}", scratch.0.join("shmq.pc").display()))
        .arg("CARGO=true")
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let lib = prefix.join("lib");
    for f in ["include/shmq.h", "lib/libshmq.a", "lib/libshmq.so", "lib/libshmq.so.1", "lib/pkgconfig/shmq.pc"] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    assert_eq!(std::fs::read_link(lib.join("libshmq.so")).unwrap(), Path::new("libshmq.so.1"));
    let real = std::fs::read_link(lib.join("libshmq.so.1")).unwrap();
    assert!(real.to_string_lossy().starts_with("libshmq.so.1."), "{}", real.display());
    assert_eq!(
        std::fs::read(prefix.join("include/shmq.h")).unwrap(),
        std::fs::read(crate_dir().join("include/shmq.h")).unwrap()
    );

    // Shipped without debug information (the test profile builds it with).
    assert!(section_names(&deps_dir().join("libshmq.a")).contains(".debug_info"), "the input has debug info");
    for f in ["libshmq.a", "libshmq.so.1"] {
        let sections = section_names(&lib.join(f));
        for debug in [".debug_info", ".debug_line", ".debug_str"] {
            assert!(!sections.contains(debug), "{f} still has {debug}");
        }
    }

    // Every exported symbol is a shmq_* function at version SHMQ_1; nothing else leaks.
    let symbols = Command::new("readelf").args(["--dyn-syms", "-W"]).arg(lib.join("libshmq.so.1")).output();
    let symbols = String::from_utf8(symbols.expect("readelf").stdout).unwrap();
    let defined: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" GLOBAL ") && !l.contains(" UND "))
        .filter_map(|l| l.split_whitespace().nth(7))
        .collect();
    for name in [
        "shmq_send@@SHMQ_1",
        "shmq_recv@@SHMQ_1",
        "shmq_last_error@@SHMQ_1",
        "shmq_options_init_sized@@SHMQ_1",
        "shmq_ack@@SHMQ_1",
        "shmq_nack@@SHMQ_1",
        "shmq_reject@@SHMQ_1",
        "shmq_consumer_in_flight@@SHMQ_1",
        "shmq_dead_letter_decode@@SHMQ_1",
    ] {
        assert!(defined.contains(&name), "{name} is not exported:\n{symbols}");
    }
    for name in &defined {
        assert!(name.starts_with("shmq_") && name.ends_with("@@SHMQ_1") || *name == "SHMQ_1", "exported: {name}");
    }
    assert!(readelf_dynamic(&lib.join("libshmq.so.1")).contains("Library soname: [libshmq.so.1]"));

    let pc_path = lib.join("pkgconfig");
    let pc = std::fs::read_to_string(pc_path.join("shmq.pc")).unwrap();
    assert!(pc.contains("libdir=${prefix}/lib\n") && pc.contains("includedir=${prefix}/include\n"), "{pc}");
    let pkg = |args: &[&str]| {
        let out = Command::new("pkg-config").args(args).arg("shmq").env("PKG_CONFIG_PATH", &pc_path).output();
        let out = out.expect("run pkg-config (Debian package pkg-config)");
        assert!(out.status.success(), "pkg-config {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let flags = pkg(&["--cflags", "--libs"]);
    assert!(flags.contains(&format!("-I{}", prefix.join("include").display())), "{flags}");
    assert!(flags.contains("-lshmq"), "{flags}");
    assert!(pkg(&["--static", "--libs"]).contains("-lpthread"));

    // Exactly the documented command, through a shell.
    let cc = |name: &str, cmdline: String| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmdline)
            .env("PKG_CONFIG_PATH", &pc_path)
            .current_dir(&scratch.0)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "building {name}: {}", String::from_utf8_lossy(&out.stderr));
        scratch.0.join(name)
    };
    let examples = crate_dir().join("examples");
    let dynamic_cc = |name: &str| {
        cc(name, format!("cc {}/{name}.c $(pkg-config --cflags --libs shmq) -o {name}", examples.display()))
    };
    let producer = dynamic_cc("producer");
    let consumer = dynamic_cc("consumer");
    assert!(readelf_dynamic(&producer).contains("Shared library: [libshmq.so.1]"));
    // The program asks the loader for the version, so an older library without it refuses.
    let needs = Command::new("readelf").arg("-V").arg(&producer).output().expect("readelf -V");
    let needs = String::from_utf8_lossy(&needs.stdout).into_owned();
    assert!(needs.contains("File: libshmq.so.1") && needs.contains("Name: SHMQ_1"), "{needs}");
    run_producer_and_consumer(&producer, &consumer, &[("LD_LIBRARY_PATH", lib.as_os_str())]);

    // Static: the archive by path, then what it needs (Libs.private).
    let static_cc = |name: &str| {
        cc(
            name,
            format!(
                "cc {}/{name}.c $(pkg-config --cflags shmq) \"$(pkg-config --variable=libdir shmq)/libshmq.a\" \
                 $(pkg-config --static --libs-only-l shmq | sed 's/-lshmq//') -o {name}-static",
                examples.display()
            ),
        );
        scratch.0.join(format!("{name}-static"))
    };
    let producer = static_cc("producer");
    let consumer = static_cc("consumer");
    assert!(!readelf_dynamic(&producer).contains("libshmq"));
    run_producer_and_consumer(&producer, &consumer, &[]);

    // The installed tree can move: pkg-config finds it where it is now.
    let moved = scratch.0.join("moved");
    std::fs::rename(&prefix, &moved).unwrap();
    let out = Command::new("pkg-config")
        .args(["--define-prefix", "--cflags", "--libs", "shmq"])
        .env("PKG_CONFIG_PATH", moved.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config");
    let flags = String::from_utf8_lossy(&out.stdout);
    assert!(flags.contains(&format!("-I{}", moved.join("include").display())), "{flags}");
    assert!(flags.contains(&format!("-L{}", moved.join("lib").display())), "{flags}");
}

/// The section names of an ELF file (every member of an archive).
fn section_names(file: &Path) -> String {
    let out = Command::new("readelf").args(["-S", "-W"]).arg(file).output().expect("run readelf");
    assert!(out.status.success(), "readelf -S {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The header compiles cleanly as C89, C99, C11 and C++ with every warning an error, and
/// a C89 program links and runs against the library.
#[test]
fn header_is_clean_c89_c99_c11_and_cxx() {
    let scratch = Scratch::new("strict");
    let src = scratch.0.join("strict.c");
    std::fs::write(
        &src,
        "#include \"shmq.h\"\n#include <stdio.h>\n#include <string.h>\n\
         int main(void) {\n\
         \x20   shmq_options o;\n\
         \x20   shmq_subscription_options so;\n\
         \x20   shmq_msg_info info;\n\
         \x20   shmq_dead_letter_info dl;\n\
         \x20   shmq_producer *p = NULL;\n\
         \x20   int rc = shmq_options_init(&o);\n\
         \x20   if (rc != SHMQ_OK || o.size != sizeof o || o.permissions != 0600) return 1;\n\
         \x20   if (shmq_producer_open(\"ctest-strict-missing\", &p) != SHMQ_ERR_NOT_FOUND) return 2;\n\
         \x20   if (strstr(shmq_last_error(), \"ctest-strict-missing\") == NULL) return 3;\n\
         \x20   if (SHMQ_ERR_FULL != -1 || -SHMQ_ERR_FULL != 1) return 4;\n\
         \x20   rc = shmq_subscription_options_init(&so);\n\
         \x20   if (rc != SHMQ_OK || so.size != sizeof so || so.lag_limit != 0 || so.ack != SHMQ_ACK_AUTO) return 5;\n\
         \x20   memset(&info, 0, sizeof info);\n\
         \x20   if (shmq_recv_info(NULL, NULL, 0, NULL, &info, 0) != SHMQ_ERR_INVALID) return 6;\n\
         \x20   if (SHMQ_ERR_LAPPED != -17 || shmq_consumer_subscribe(\"ctest-strict-missing\", \"s\", NULL) != SHMQ_ERR_INVALID) return 7;\n\
         \x20   if (o.log_dir != NULL || o.fsync != SHMQ_FSYNC_NEVER || o.retain_bytes != 0) return 8;\n\
         \x20   if (SHMQ_DEFAULT_MAX_LOG_BYTES / 1024 != 8388608L || SHMQ_FSYNC_ALWAYS == SHMQ_FSYNC_INTERVAL) return 9;\n\
         \x20   if (SHMQ_DEFAULT_ACK_WAIT_NS / 1000000 != 30000L || SHMQ_ERR_ACK_EXPIRED != -20) return 10;\n\
         \x20   if (shmq_dead_letter_decode(\"x\", 1, &dl) != SHMQ_ERR_CORRUPT || dl.payload != NULL) return 11;\n\
         \x20   if (shmq_ack(NULL, 0) != SHMQ_ERR_INVALID || shmq_nack(NULL, 0, NULL) != SHMQ_ERR_INVALID) return 12;\n\
         \x20   printf(\"strict ok %d\\n\", shmq_abi_version());\n\
         \x20   return 0;\n\
         }\n",
    )
    .unwrap();
    let strict = ["-pedantic", "-Wall", "-Wextra", "-Werror"];
    for (compiler, std) in [("gcc", "-std=c89"), ("gcc", "-std=c99"), ("gcc", "-std=c11"), ("g++", "-std=c++11")] {
        let mut cmd = Command::new(compiler);
        cmd.args(strict).arg(std).arg("-I").arg(crate_dir().join("include"));
        if compiler == "g++" {
            cmd.arg("-x").arg("c++");
        }
        let exe = scratch.0.join(format!("strict{std}"));
        cmd.arg(&src);
        if compiler == "g++" {
            cmd.arg("-x").arg("none");
        }
        let out = cmd.arg(built_library("libshmq.a")).args(LIBS_PRIVATE).arg("-o").arg(&exe).output();
        let out = out.unwrap_or_else(|e| panic!("run {compiler}: {e}"));
        assert!(out.status.success(), "{compiler} {std}:\n{}", String::from_utf8_lossy(&out.stderr));
        let run = finish(spawn(&exe, &[], Build::Plain), "strict program");
        check(&run, &format!("{compiler} {std} program"), "strict ok 1");
    }
}

c_test!(
    last_error_options_size_and_call_order,
    last_error_under_sanitizers,
    "tests/c/errors.c",
    [],
    [
        "ok last_error_says_why",
        "ok last_error_is_per_thread",
        "ok options_size_comes_from_the_caller",
        "ok sends_are_refused_while_a_reservation_is_outstanding spsc",
        "ok sends_are_refused_while_a_reservation_is_outstanding mpsc"
    ]
);

c_test!(
    misused_handles_are_refused_not_corrupted,
    misused_handles_under_sanitizers,
    "tests/c/handles.c",
    [],
    [
        "ok wrong_kind_or_no_handle_is_refused",
        "ok a_handle_used_right_after_close_is_refused",
        "ok a_blocked_call_holds_the_handle",
        "ok a_handle_passed_between_threads_is_never_refused",
        "ok threads_that_reuse_an_ended_threads_identity_are_let_in",
        "ok two_threads_on_one_consumer spsc: 200000 messages once each",
        "ok two_threads_on_one_consumer mpsc: 200000 messages once each"
    ]
);

c_test!(
    signals_do_not_end_waits_and_interrupt_calls_do,
    signals_under_sanitizers,
    "tests/c/signals.c",
    [],
    [
        "ok signals_alone_do_not_interrupt_a_wait",
        "ok handler_interrupts_a_blocked_recv block",
        "ok handler_interrupts_a_blocked_recv adaptive",
        "ok handler_interrupts_a_blocked_send",
        "ok an_early_interrupt_is_kept_for_the_next_wait",
        "ok another_thread_interrupts_a_blocked_peek",
        "ok interrupting_no_handle_is_refused_quietly"
    ]
);

c_test!(
    subscription_options_and_recv_info,
    subscription_options_under_sanitizers,
    "tests/c/subscriptions.c",
    ["basic"],
    ["ok subscription_options_are_checked", "ok recv_info_on_the_default_subscription"]
);

c_test!(
    subscriptions_fan_out_share_work_survive_kill9_and_lap,
    subscriptions_under_sanitizers,
    "tests/c/subscriptions.c",
    ["protocol"],
    [
        "ok every_subscription_receives_every_message",
        "ok two_members_share_the_work:",
        "ok two_members_share_the_work on a tiny ring:",
        "ok a_killed_members_messages_reach_the_survivor",
        "ok a_lagging_subscription_is_lapped",
        "ok a_removed_subscription_closes_its_members",
        "ok a_closed_members_batch_goes_to_another_member"
    ]
);

/// Runs the C test program `source` with a scratch directory on the real disk (under
/// cargo's temporary directory for integration tests) for its log directories, as its one
/// argument.
fn run_with_log_dir(source: &str, build: Build) -> String {
    let stem = Path::new(source).file_stem().unwrap().to_string_lossy().into_owned();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "c-{stem}-{}-{}",
        std::process::id(),
        if build == Build::Sanitized { "asan" } else { "plain" }
    ));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("create the log scratch directory");
    let out = std::panic::catch_unwind(|| run_c_test(source, &[base.to_str().expect("UTF-8 path")], build));
    let _ = std::fs::remove_dir_all(&base);
    out.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn run_durable(build: Build) -> String {
    run_with_log_dir("tests/c/durable.c", build)
}

const DURABLE_LINES: &[&str] = &[
    "ok durable_options_are_checked",
    "ok fsync_always_from_c: 100 synced sends, 50 in flight then waited for",
    "ok a_restarted_queue_delivers_what_was_not_received: 6 of 10",
];

#[test]
fn a_durable_queue_from_c_syncs_waits_and_restarts_from_its_log() {
    let out = run_durable(Build::Plain);
    for line in DURABLE_LINES {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn durable_under_sanitizers() {
    let out = run_durable(Build::Sanitized);
    for line in DURABLE_LINES {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

const ACKS_LINES: &[&str] = &[
    "ok explicit_options_are_checked",
    "ok a_killed_members_messages_come_back_and_end_as_acks_or_dead_letters: 3 of 5 redelivered",
    "ok a_late_ack_expires: handed over after",
];

/// Explicit acks from C (`tests/c/acks.c`): a member killed with SIGKILL holding
/// unacknowledged messages, nacks, rejects and dead letters, a late ack.
#[test]
fn explicit_acks_from_c_redeliver_dead_letter_and_expire() {
    let out = run_with_log_dir("tests/c/acks.c", Build::Plain);
    for line in ACKS_LINES {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn explicit_acks_under_sanitizers() {
    let out = run_with_log_dir("tests/c/acks.c", Build::Sanitized);
    for line in ACKS_LINES {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}
