//! What `shmq bench` reports: the merged results, the ratios, the printed table, the JSON
//! (`schema_version` 1, documented in README "Performance") and the HdrHistogram percentile-distribution files.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Config, Kind, Measurements, WaitKind, new_histogram};

/// The JSON schema version of `shmq bench --json`.
pub const SCHEMA_VERSION: u32 = 1;

/// `shmq bench --json FILE`.
#[derive(Serialize)]
pub struct Report {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// Where it ran.
    pub machine: Machine,
    /// How it ran (added to schema version 1; nothing else in it changes).
    pub run: RunInfo,
    /// One per (transport, wait, size), merged over rounds.
    pub results: Vec<ResultJson>,
    /// shmq against each baseline, median over rounds.
    pub ratios: Vec<Ratio>,
    /// `shmq bench --fanout` only (added to schema version 1; `results` and `ratios` are
    /// then empty): what subscriptions cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<super::fanout::FanoutReport>,
}

/// The machine.
#[derive(Serialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// `linux`.
    pub os: &'static str,
    /// `x86_64`, `aarch64`.
    pub arch: &'static str,
    /// Kernel release.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Whether it runs under a hypervisor.
    pub virtualized: bool,
    /// The kernel's clock source (`tsc` reads cost nanoseconds; others may cost more).
    pub clocksource: String,
    /// CPUs the leader and the peer were pinned to (null: not pinned).
    pub pinned_cpus: Option<[usize; 2]>,
}

/// The run's parameters and floor probes.
#[derive(Serialize)]
pub struct RunInfo {
    /// Version of shmq.
    pub shmq_version: &'static str,
    /// Rounds.
    pub rounds: usize,
    /// `--quick`.
    pub quick: bool,
    /// Message sizes in bytes.
    pub sizes: Vec<usize>,
    /// Warm-up round trips per run.
    pub warmup_round_trips: u64,
    /// `--messages`, if given (else time budgets).
    pub messages: Option<u64>,
    /// Time budget of a latency run (ms), without `--messages`.
    pub latency_budget_ms: u64,
    /// Time budget of a stream (ms), without `--messages`.
    pub throughput_budget_ms: u64,
    /// Spin-floor p50 one-way before and after the rounds.
    pub floor_probe: Option<Probe>,
    /// Wall time of the whole measurement.
    pub elapsed_s: f64,
}

/// A floor probe.
#[derive(Serialize)]
pub struct Probe {
    /// Message size.
    pub size: usize,
    /// p50 one-way (ns) before the rounds.
    pub before_p50_ns: u64,
    /// p50 one-way (ns) after the rounds.
    pub after_p50_ns: u64,
}

/// One-way latency percentiles in nanoseconds.
#[derive(Serialize, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One result.
#[derive(Serialize)]
pub struct ResultJson {
    /// `shmq`, `spin-floor`, `futex-floor`, `pipe`, `uds`.
    pub transport: &'static str,
    /// `spin`, `block`, `adaptive`.
    pub wait: &'static str,
    /// Message size in bytes.
    pub size: usize,
    /// One-way latency, merged over rounds.
    pub latency_ns: Latency,
    /// Round trips recorded, over all rounds.
    pub round_trips: u64,
    /// Streamed messages over streaming time, over all rounds.
    pub throughput_msgs_per_s: f64,
    /// The same in MB/s (10⁶ bytes).
    pub throughput_mb_per_s: f64,
}

/// shmq against a baseline.
#[derive(Serialize, Clone)]
pub struct Ratio {
    /// Message size.
    pub size: usize,
    /// `shmq`, or `shmq-c` (against `shmq` only).
    pub transport: &'static str,
    /// The transport's wait (and the baseline's, for `shmq-c` against `shmq`).
    pub wait: &'static str,
    /// `spin-floor`, `futex-floor` or `fastest-kernel` (the better of pipe and uds in
    /// each round); `shmq` for `shmq-c`.
    pub baseline: &'static str,
    /// `latency_p50` (transport / baseline: lower is better) or `throughput_msgs_per_s`
    /// (transport / baseline: higher is better; the same ratio as MB/s, both at one size).
    /// A floor's throughput is its bare ring's. `shmq-c` against `shmq`: `latency_p50` and
    /// `latency_p99`.
    pub metric: &'static str,
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// Each round's ratio.
    pub per_round: Vec<f64>,
    /// For `fastest-kernel`: which transport it was in each round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_per_round: Vec<&'static str>,
    /// `shmq-c` against `shmq`, `latency_p50` only: p50 of shmq-c minus p50 of shmq in
    /// nanoseconds, median over rounds (the target is a difference in ns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_ns: Option<Spread>,
    /// `shmq-c` against `shmq`: the target of the C path, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'static str>,
    /// `shmq-c` against `shmq`: whether the median meets `target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_target: Option<bool>,
}

/// Median, smallest and largest of per-round values.
#[derive(Serialize, Clone)]
pub struct Spread {
    /// Median of the per-round values.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Each round's value.
    pub per_round: Vec<f64>,
}

impl Spread {
    fn of(per_round: Vec<f64>) -> Spread {
        let (min, max) = min_max(&per_round);
        Spread { median: median(&per_round), min, max, per_round }
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
}

/// The C path's targets against the Rust path (the issue that added `shmq-c`): p50 at most
/// this many ns above shmq's ...
pub const C_P50_MAX_EXTRA_NS: f64 = 10.0;
/// ... and p99 at most this ratio of shmq's.
pub const C_P99_MAX_RATIO: f64 = 1.10;

/// Merged per (config, size): `merged[size index][config index]`.
pub struct Merged {
    /// One-way latency.
    pub hist: Histogram<u64>,
    /// Round trips recorded.
    pub round_trips: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// MB (10⁶) per second.
    pub mb_per_s: f64,
}

/// Merges the rounds of each (size, config).
pub fn merge(m: &Measurements) -> Vec<Vec<Merged>> {
    (0..m.sizes.len())
        .map(|si| {
            (0..m.configs.len())
                .map(|ci| {
                    let mut hist = new_histogram();
                    let (mut rts, mut msgs, mut secs) = (0, 0u64, 0f64);
                    for round in &m.samples {
                        let s = &round[si][ci];
                        let _ = hist.add(&s.hist);
                        rts += s.round_trips;
                        msgs += s.streamed;
                        secs += s.stream_time.as_secs_f64();
                    }
                    let msgs_per_s = if secs > 0.0 { msgs as f64 / secs } else { 0.0 };
                    Merged { hist, round_trips: rts, msgs_per_s, mb_per_s: msgs_per_s * m.sizes[si] as f64 / 1e6 }
                })
                .collect()
        })
        .collect()
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

/// The ratios of every shmq wait against every baseline that ran, per size.
pub fn ratios(m: &Measurements) -> Vec<Ratio> {
    let find = |k: Kind| m.configs.iter().position(|c| c.kind == k);
    let kernels: Vec<usize> = (0..m.configs.len()).filter(|&i| m.configs[i].kind.is_kernel()).collect();
    let p50 = |r: usize, si: usize, ci: usize| m.samples[r][si][ci].hist.value_at_quantile(0.5).max(1) as f64;
    let tput = |r: usize, si: usize, ci: usize| {
        let s = &m.samples[r][si][ci];
        s.streamed as f64 / s.stream_time.as_secs_f64().max(1e-12)
    };
    let mut out = Vec::new();
    for (si, &size) in m.sizes.iter().enumerate() {
        for (ci, c) in m.configs.iter().enumerate().filter(|(_, c)| c.kind == Kind::Shmq) {
            let mut push = |baseline, metric, per_round: Vec<f64>, names: Vec<&'static str>| {
                let (min, max) = per_round.iter().fold((f64::INFINITY, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
                out.push(Ratio {
                    size,
                    transport: "shmq",
                    wait: c.wait.name(),
                    baseline,
                    metric,
                    median: median(&per_round),
                    min,
                    max,
                    per_round,
                    baseline_per_round: names,
                    diff_ns: None,
                    target: None,
                    within_target: None,
                });
            };
            for (kind, name) in [(Kind::SpinFloor, "spin-floor"), (Kind::FutexFloor, "futex-floor")] {
                if let Some(fi) = find(kind) {
                    let v = (0..m.samples.len()).map(|r| p50(r, si, ci) / p50(r, si, fi)).collect();
                    push(name, "latency_p50", v, Vec::new());
                    // Same size on both sides: also the ratio of MB/s.
                    let v = (0..m.samples.len()).map(|r| tput(r, si, ci) / tput(r, si, fi)).collect();
                    push(name, "throughput_msgs_per_s", v, Vec::new());
                }
            }
            if !kernels.is_empty() {
                let best_lat = |r: usize| {
                    kernels
                        .iter()
                        .map(|&k| (p50(r, si, k), m.configs[k].kind.name()))
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                };
                let best_tput = |r: usize| {
                    kernels
                        .iter()
                        .map(|&k| (tput(r, si, k), m.configs[k].kind.name()))
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                };
                let (v, n): (Vec<f64>, Vec<&str>) = (0..m.samples.len())
                    .filter_map(|r| best_lat(r).map(|(b, name)| (p50(r, si, ci) / b, name)))
                    .unzip();
                push("fastest-kernel", "latency_p50", v, n);
                let (v, n): (Vec<f64>, Vec<&str>) = (0..m.samples.len())
                    .filter_map(|r| best_tput(r).map(|(b, name)| (tput(r, si, ci) / b, name)))
                    .unzip();
                push("fastest-kernel", "throughput_msgs_per_s", v, n);
            }
        }
        out.extend(c_ratios(m, si));
    }
    out
}

/// `shmq-c` against `shmq` with the same wait at size index `si`: p50 (ratio and
/// difference) and p99, each taken within a round, with the C path's targets.
fn c_ratios(m: &Measurements, si: usize) -> Vec<Ratio> {
    let q = |r: usize, ci: usize, q: f64| m.samples[r][si][ci].hist.value_at_quantile(q).max(1) as f64;
    let rounds = 0..m.samples.len();
    let mut out = Vec::new();
    for (ci, c) in m.configs.iter().enumerate().filter(|(_, c)| c.kind == Kind::ShmqC) {
        let Some(ri) = m.configs.iter().position(|r| r.kind == Kind::Shmq && r.wait == c.wait) else { continue };
        let ratio = |metric, quantile: f64, diff: bool, target, within: &dyn Fn(f64, f64) -> bool| {
            let per_round: Vec<f64> = rounds.clone().map(|r| q(r, ci, quantile) / q(r, ri, quantile)).collect();
            let diff_ns =
                diff.then(|| Spread::of(rounds.clone().map(|r| q(r, ci, quantile) - q(r, ri, quantile)).collect()));
            let s = Spread::of(per_round);
            let ok = within(s.median, diff_ns.as_ref().map_or(f64::NAN, |d| d.median));
            Ratio {
                size: m.sizes[si],
                transport: "shmq-c",
                wait: c.wait.name(),
                baseline: "shmq",
                metric,
                median: s.median,
                min: s.min,
                max: s.max,
                per_round: s.per_round,
                baseline_per_round: Vec::new(),
                diff_ns,
                target: Some(target),
                within_target: Some(ok),
            }
        };
        out.push(ratio("latency_p50", 0.5, true, "p50 <= shmq p50 + 10 ns", &|_, d| d <= C_P50_MAX_EXTRA_NS));
        out.push(ratio("latency_p99", 0.99, false, "p99 <= 1.10 x shmq p99", &|r, _| r <= C_P99_MAX_RATIO));
    }
    out
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn machine(m: &Measurements) -> Machine {
    machine_info(m.cpus, m.pinned)
}

/// The machine, with the CPUs the bench could use and where its two processes were pinned.
pub fn machine_info(cpus: usize, pinned: Option<(usize, usize)>) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let cpu_model =
        field("model name").or_else(|| field("CPU part").map(|p| format!("CPU part {p}"))).unwrap_or_default();
    let virtualized = field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
    Machine {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        cpu_model,
        cpus,
        virtualized,
        clocksource: read_trim("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        pinned_cpus: pinned.map(|(a, b)| [a, b]),
    }
}

impl Report {
    /// Everything the JSON holds.
    pub fn build(m: &Measurements, quick: bool) -> Report {
        let merged = merge(m);
        let mut results = Vec::new();
        for (si, &size) in m.sizes.iter().enumerate() {
            for (ci, c) in m.configs.iter().enumerate() {
                let g = &merged[si][ci];
                results.push(ResultJson {
                    transport: c.kind.name(),
                    wait: c.wait.name(),
                    size,
                    latency_ns: Latency::of(&g.hist),
                    round_trips: g.round_trips,
                    throughput_msgs_per_s: g.msgs_per_s,
                    throughput_mb_per_s: g.mb_per_s,
                });
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            machine: machine(m),
            run: RunInfo {
                shmq_version: env!("CARGO_PKG_VERSION"),
                rounds: m.samples.len(),
                quick,
                sizes: m.sizes.clone(),
                warmup_round_trips: m.budget.warmup,
                messages: m.budget.fixed,
                latency_budget_ms: m.budget.latency.as_millis() as u64,
                throughput_budget_ms: m.budget.throughput.as_millis() as u64,
                floor_probe: m.probe.map(|(size, b, a)| Probe { size, before_p50_ns: b, after_p50_ns: a }),
                elapsed_s: m.elapsed.as_secs_f64(),
            },
            results,
            ratios: ratios(m),
            subscriptions: None,
        }
    }

    /// The JSON of `shmq bench --fanout`: the machine, the run, no transport results, and
    /// the subscriptions' (no latency runs: `warmup_round_trips` and `latency_budget_ms`
    /// are 0; `throughput_budget_ms` is a run's stream).
    pub fn for_fanout(
        machine: Machine,
        m: &super::fanout::FanoutMeasurements,
        plan: &super::fanout::Plan,
        subscriptions: super::fanout::FanoutReport,
    ) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            machine,
            run: RunInfo {
                shmq_version: env!("CARGO_PKG_VERSION"),
                rounds: m.runs.len(),
                quick: plan.quick,
                sizes: m.sizes.clone(),
                warmup_round_trips: 0,
                messages: plan.fixed,
                latency_budget_ms: 0,
                throughput_budget_ms: plan.budget.as_millis() as u64,
                floor_probe: None,
                elapsed_s: m.elapsed.as_secs_f64(),
            },
            results: Vec::new(),
            ratios: Vec::new(),
            subscriptions: Some(subscriptions),
        }
    }
}

fn size_label(n: usize) -> String {
    crate::args::format_size(n as u64)
}

/// A rate with an SI prefix: `20.06 M`.
pub fn rate(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The printed table.
pub fn table(m: &Measurements, rep: &Report) -> String {
    let mut s = String::new();
    let mc = &rep.machine;
    let pin = match m.pinned {
        Some((a, b)) => format!("pinned to CPUs {a} and {b}"),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        s,
        "shmq bench: 2 processes {pin}; {} ({} CPUs{}), Linux {}, clock {}",
        mc.cpu_model,
        mc.cpus,
        if mc.virtualized { ", virtualized" } else { "" },
        mc.kernel,
        mc.clocksource
    );
    let _ = writeln!(
        s,
        "{} rounds, transports interleaved; {} in {:.1} s",
        m.samples.len(),
        match m.budget.fixed {
            Some(n) => format!("{n} round trips and {n} streamed messages per run"),
            None => format!(
                "runs of ~{} ms ping-pong + ~{} ms streaming",
                m.budget.latency.as_millis(),
                m.budget.throughput.as_millis()
            ),
        },
        m.elapsed.as_secs_f64()
    );
    if let Some((size, b, _)) = m.probe {
        let _ = writeln!(s, "floor probe before: spin-floor {} p50 one-way {b} ns", size_label(size));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<14} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11} {:>11} {:>10}",
        "size", "transport", "p50", "p90", "p99", "p99.9", "max", "round trips", "msgs/s", "MB/s"
    );
    let _ = writeln!(s, "{:<23} {:-^45} {:>11} {:-^22}", "", " one-way latency, ns ", "", " streaming ");
    let mut last = usize::MAX;
    for r in &rep.results {
        if r.size != last && last != usize::MAX {
            let _ = writeln!(s);
        }
        last = r.size;
        let label = Config {
            kind: Kind::ALL.iter().copied().find(|k| k.name() == r.transport).unwrap_or(Kind::Shmq),
            wait: [WaitKind::Spin, WaitKind::Block, WaitKind::Adaptive]
                .into_iter()
                .find(|w| w.name() == r.wait)
                .unwrap_or(WaitKind::Block),
        }
        .label();
        let l = r.latency_ns;
        let _ = writeln!(
            s,
            "{:<8} {:<14} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11} {:>11} {:>10.1}",
            size_label(r.size),
            label,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            r.round_trips,
            rate(r.throughput_msgs_per_s),
            r.throughput_mb_per_s
        );
    }
    if let Some((size, _, a)) = m.probe {
        let _ = writeln!(s, "\nfloor probe after: spin-floor {} p50 one-way {a} ns", size_label(size));
    }
    if rep.ratios.iter().any(|r| r.transport == "shmq") {
        let _ = writeln!(s, "\nshmq relative to the baselines, median over rounds [min-max]:");
        let _ = writeln!(s, "  latency: shmq p50 / baseline p50 (1.00 = as fast; lower is better)");
        let _ =
            writeln!(s, "  throughput: shmq msgs/s / baseline msgs/s, the same as the MB/s ratio (higher is better);");
        let _ = writeln!(s, "  a floor streams through a bare ring, the fastest kernel transport through its buffer");
        let cell = |size: usize, wait: &str, baseline: &str, metric: &str| {
            rep.ratios
                .iter()
                .find(|r| r.size == size && r.wait == wait && r.baseline == baseline && r.metric == metric)
                .map(|r| format!("{:.2} [{:.2}-{:.2}]", r.median, r.min, r.max))
                .unwrap_or_else(|| "-".to_owned())
        };
        let baselines = ["spin-floor", "futex-floor", "fastest-kernel"];
        let heads = ["vs spin-floor", "vs futex-floor", "vs fastest kernel"];
        let metrics = [("latency", "latency_p50"), ("throughput", "throughput_msgs_per_s")];
        // Every cell first, so that each column is as wide as its widest value (ratios of
        // 100 and more against the kernel transports are common).
        let rows: Vec<(usize, &str, Vec<String>)> = metrics
            .iter()
            .flat_map(|&(_, metric)| {
                let cell = &cell;
                m.sizes.iter().flat_map(move |&size| {
                    m.configs.iter().filter(|c| c.kind == Kind::Shmq).map(move |c| {
                        let w = c.wait.name();
                        (size, w, baselines.iter().map(|b| cell(size, w, b, metric)).collect())
                    })
                })
            })
            .collect();
        let width = |i: usize| rows.iter().map(|r| r.2[i].len()).chain([heads[i].len()]).max().unwrap_or(0);
        let widths = [width(0), width(1), width(2)];
        let per_metric = rows.len() / metrics.len();
        for (k, &(title, _)) in metrics.iter().enumerate() {
            let _ = writeln!(
                s,
                "\n{:<10} {:<12} {:>w0$} {:>w1$} {:>w2$}",
                title,
                "shmq wait",
                heads[0],
                heads[1],
                heads[2],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            for (size, w, cells) in &rows[k * per_metric..(k + 1) * per_metric] {
                let _ = writeln!(
                    s,
                    "{:<10} {:<12} {:>w0$} {:>w1$} {:>w2$}",
                    size_label(*size),
                    w,
                    cells[0],
                    cells[1],
                    cells[2],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                );
            }
        }
    }
    c_table(&mut s, rep);
    s
}

/// The lines of `shmq-c` against `shmq`, if both ran with a common wait.
fn c_table(s: &mut String, rep: &Report) {
    let c: Vec<&Ratio> = rep.ratios.iter().filter(|r| r.transport == "shmq-c").collect();
    if c.is_empty() {
        return;
    }
    let verdict = |r: &Ratio| match r.within_target {
        Some(true) => "met",
        _ => "MISSED",
    };
    let _ = writeln!(
        s,
        "\nshmq-c (the C ABI, libshmq.so) relative to shmq (Rust), same wait, median over rounds [min-max]:"
    );
    let _ = writeln!(
        s,
        "  targets: p50 at most {C_P50_MAX_EXTRA_NS:.0} ns above shmq's, p99 at most {:.0} % above shmq's",
        (C_P99_MAX_RATIO - 1.0) * 100.0
    );
    let rows: Vec<[String; 7]> = c
        .iter()
        .filter(|r| r.metric == "latency_p50")
        .map(|p50| {
            let p99 = c.iter().find(|r| r.metric == "latency_p99" && r.size == p50.size && r.wait == p50.wait);
            let d = p50.diff_ns.as_ref();
            [
                size_label(p50.size),
                p50.wait.to_owned(),
                d.map(|d| format!("{:+.0} [{:+.0} to {:+.0}]", d.median, d.min, d.max)).unwrap_or_else(|| "-".into()),
                verdict(p50).to_owned(),
                format!("{:.2} [{:.2}-{:.2}]", p50.median, p50.min, p50.max),
                p99.map(|r| format!("{:.2} [{:.2}-{:.2}]", r.median, r.min, r.max)).unwrap_or_else(|| "-".into()),
                p99.map(|r| verdict(r).to_owned()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let p50_target = format!("<= +{C_P50_MAX_EXTRA_NS:.0} ns");
    let p99_target = format!("<= {C_P99_MAX_RATIO:.2}");
    let heads = ["size", "wait", "p50 C-Rust, ns", &p50_target, "p50 C/Rust", "p99 C/Rust", &p99_target];
    let w: Vec<usize> =
        (0..heads.len()).map(|i| rows.iter().map(|r| r[i].len()).chain([heads[i].len()]).max().unwrap_or(0)).collect();
    for row in std::iter::once(heads.map(str::to_owned)).chain(rows) {
        let _ = writeln!(
            s,
            "{:<w0$} {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}  {:>w6$}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            w0 = w[0].max(8),
            w1 = w[1].max(8),
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
            w6 = w[6]
        );
    }
}

/// The HdrHistogram percentile distribution of `h` (nanoseconds), in microseconds, in the
/// text format of Java's `outputPercentileDistribution` that the HdrHistogram plotter
/// (`plotFiles.html`) reads.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0;
    let mut s = String::new();
    let _ = writeln!(s, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / SCALE;
        if q < 1.0 {
            let _ = writeln!(s, "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(s, "{value:>12.3} {q:>2.12} {total:>10}");
        }
    }
    let _ = writeln!(s, "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]", h.mean() / SCALE, h.stdev() / SCALE);
    let _ = writeln!(s, "#[Max     = {:>12.3}, Total count    = {:>12}]", h.max() as f64 / SCALE, h.len());
    let sub_buckets = 2u64 << ((2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32 - 1);
    let _ = writeln!(s, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets);
    s
}

/// Writes one `.hgrm` file per (transport, wait, size) into `dir`:
/// `shmq-spin-64B.hgrm`, `pipe-block-64B.hgrm`, ...
pub fn write_hgrm(dir: &Path, m: &Measurements) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let merged = merge(m);
    for (si, &size) in m.sizes.iter().enumerate() {
        for (ci, c) in m.configs.iter().enumerate() {
            let path = dir.join(format!("{}-{}-{size}B.hgrm", c.kind.name(), c.wait.name()));
            std::fs::write(&path, percentile_distribution(&merged[si][ci].hist))
                .with_context(|| format!("write {}", path.display()))?;
        }
    }
    Ok(())
}
