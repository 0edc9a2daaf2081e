//! `shmq-bridge`: forwards messages between a shmq queue and NATS JetStream, at least once.
//!
//! * `--from-queue NAME --to-subject SUBJ`: the bridge is the queue's consumer
//!   ([`shmq::Consumer::open`]); it holds the messages it publishes and releases each only
//!   after JetStream acknowledged storing it, under a `Nats-Msg-Id` made of the queue's identity and the message's id, so
//!   that JetStream drops the copy it gets again after a crash ([`to_nats`]).
//! * `--from-subject SUBJ --to-queue NAME`: a durable JetStream pull consumer; each message is
//!   acknowledged to NATS only after the shmq send returned ([`from_nats`]).
//!
//! The bridge keeps no state of its own: a bridge killed at any point and started again
//! resumes where the queue (its published consumer position) and JetStream (the durable
//! consumer, the stream's duplicate window) say. The README's *NATS JetStream bridge*
//! section explains the guarantees, the options and the figures.

mod from_nats;
mod log;
mod nats;
mod stats;
mod to_nats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Forwards messages between a shmq queue and NATS JetStream, at least once both ways.
#[derive(Parser, Debug)]
#[command(name = "shmq-bridge", version, about, long_about = None)]
#[command(group = clap::ArgGroup::new("direction").required(true).multiple(false).args(["from_queue", "from_subject"]))]
#[command(after_help = "Directions:\n  shmq-bridge --from-queue orders --to-subject orders.in --stream ORDERS\n  \
shmq-bridge --from-subject orders.out --to-queue orders-out --stream ORDERS_OUT\n\n\
Credentials: --creds, --user/--password, --token or --nkey-seed (or NATS_CREDS, NATS_USER, NATS_PASSWORD,\n\
NATS_TOKEN, NATS_NKEY_SEED). Counters: written as JSON to --stats-file every second.")]
pub struct Args {
    /// Read this shmq queue (as its consumer) and publish each message to --to-subject.
    #[arg(long, requires = "to_subject", value_name = "NAME")]
    pub from_queue: Option<String>,
    /// The JetStream subject that messages from --from-queue are published to (a literal
    /// subject: no `*` or `>`).
    #[arg(long, requires = "from_queue", value_name = "SUBJ", value_parser = parse_publish_subject)]
    pub to_subject: Option<String>,
    /// Read this JetStream subject (a durable pull consumer) and send each message to --to-queue.
    #[arg(long, requires = "to_queue", value_name = "SUBJ")]
    pub from_subject: Option<String>,
    /// The shmq queue that messages from --from-subject are sent to (it must exist).
    #[arg(long, requires = "from_subject", value_name = "NAME")]
    pub to_queue: Option<String>,
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The JetStream stream: checked on start (it must capture the subject) or created (file
    /// storage, the subject as its only subject).
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// Duplicate window of a stream the bridge creates: how long JetStream remembers a
    /// `Nats-Msg-Id`. A bridge down longer than this may publish a duplicate after restart.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// --from-subject: the durable consumer's name [default: shmq-bridge-<to-queue>].
    #[arg(long, value_name = "NAME")]
    pub durable: Option<String>,
    /// --from-subject: how long JetStream waits for an ack before delivering a message again.
    /// While the shmq queue is full the bridge tells JetStream it is still working on the
    /// message it holds (a progress ack), so a full queue alone causes no redelivery of it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ack_wait: Duration,
    /// --from-queue: the most messages published and not yet acked by JetStream (all of them
    /// stay in the queue until acked).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub window: u32,
    /// --from-subject: messages pulled per request.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// How long to wait for JetStream to answer a publish or a request before trying again.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A NATS credentials file (JWT and nkey seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// User name (with --password).
    #[arg(long, env = "NATS_USER", requires = "password")]
    pub user: Option<String>,
    /// Password (with --user).
    #[arg(long, env = "NATS_PASSWORD", requires = "user", hide_env_values = true)]
    pub password: Option<String>,
    /// An authentication token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An nkey seed (SU...).
    #[arg(long, env = "NATS_NKEY_SEED", hide_env_values = true)]
    pub nkey_seed: Option<String>,
    /// Root CA certificate (PEM) to verify a TLS server with.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Where to write the counters (JSON, replaced every second)
    /// [default: /dev/shm/shmq-bridge.<queue>.<to-nats|from-nats>.json].
    #[arg(long, value_name = "FILE")]
    pub stats_file: Option<PathBuf>,
    /// Log each reconnect and retry only (no periodic progress lines).
    #[arg(long, short)]
    pub quiet: bool,
}

/// A duration: a number with a unit (`250ms`, `2s`, `5m`, `1h`); a plain number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 2s, 5m"))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(format!("invalid duration {s:?}: unit must be ms, s, m or h")),
    };
    // JetStream takes durations as signed nanoseconds; a larger one was sent, refused in a
    // form the client could not read, and retried forever.
    const MAX: Duration = Duration::from_secs(30 * 24 * 3600);
    match d {
        Some(d) if d.is_zero() => Err(format!("invalid duration {s:?}: must be more than zero")),
        Some(d) if d <= MAX => Ok(d),
        _ => Err(format!("invalid duration {s:?}: at most 30 days (720h)")),
    }
}

/// A subject one can publish to: dot-separated tokens, none empty, no wildcard (`*`, `>`)
/// and no white space. NATS refuses a publish to anything else, so a bridge started with it
/// would retry every message forever.
fn parse_publish_subject(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a subject cannot be empty".into());
    }
    for token in s.split('.') {
        if token.is_empty() {
            return Err(format!("invalid subject {s:?}: an empty token (a leading, trailing or double dot)"));
        }
        if token.contains(['*', '>']) {
            return Err(format!(
                "invalid subject {s:?}: wildcards (* and >) select subjects to read; messages are published to one \
                 literal subject"
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("invalid subject {s:?}: white space or control characters"));
        }
    }
    Ok(s.to_owned())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error(format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Two workers: one can be blocked in a shmq call while the other drives the connection.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Timers and tasks made on this thread (outside `block_on`) belong to this runtime.
    let _guard = rt.enter();
    let (queue, direction) = match (&args.from_queue, &args.to_queue) {
        (Some(q), _) => (q.clone(), "to-nats"),
        (_, Some(q)) => (q.clone(), "from-nats"),
        _ => unreachable!("clap requires one direction"),
    };
    shmq::validate_name(&queue).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Before connecting (which waits for a server forever): the queue must exist.
    shmq::Queue::inspect(&queue).map_err(|e| anyhow::anyhow!("queue {queue}: {e} (create it with `shmq create`)"))?;
    let stats_path = args
        .stats_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/dev/shm/shmq-bridge.{queue}.{direction}.json")));
    let stats = stats::Stats::new(stats_path, &queue, direction);
    let stop = Stop::on_signals()?;
    let js = rt.block_on(nats::connect(&args))?;
    let r = if args.from_queue.is_some() {
        to_nats::run(&rt, &args, js.clone(), &stats, &stop)
    } else {
        from_nats::run(&rt, &args, js.clone(), &stats, &stop)
    };
    stats.write(js.is_connected());
    if r.is_ok() {
        log::info(format_args!("stopped on a signal: {}", stats.summary()));
    }
    r
}

/// Set by SIGTERM, SIGINT or SIGHUP: the bridge finishes the step it is in (a batch
/// published and released, or a message sent and acked), or gives it up if it cannot finish
/// now (JetStream or the queue not answering: what it holds is forwarded by the next
/// bridge), writes its counters and exits 0; a second signal ends it at once (exit 1).
/// Without this, a signal killed the process mid-step: nothing lost, but a durable queue's
/// consumer position not written at close (its restore then delivered everything since the
/// last checkpoint again) and no last counters.
#[derive(Clone)]
pub struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Stop {
    fn on_signals() -> anyhow::Result<Stop> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            // A second signal ends the process at once (exit 1), should a step not finish:
            // registered first, it looks at the flag before the first signal's handler sets it.
            signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())?;
            signal_hook::flag::register(sig, flag.clone())?;
        }
        Ok(Stop(flag))
    }

    /// Whether a stop was asked for.
    pub fn asked(&self) -> bool {
        // Relaxed: a flag polled between steps; nothing else is ordered by it.
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_publish_subject};
    use std::time::Duration;

    #[test]
    fn a_publish_subject_is_literal() {
        for ok in ["orders", "orders.in", "a.b-c_d.E9", "$JS-like.x"] {
            assert_eq!(parse_publish_subject(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "orders.*", "orders.>", ">", "a*b", "orders.", ".orders", "a..b", "a b", "a\tb"] {
            assert!(parse_publish_subject(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_publish_subject("orders.*").unwrap_err().contains("wildcards"));
    }

    #[test]
    fn durations_take_units_and_refuse_zero_and_more_than_30_days() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("721h").is_err());
        assert!(parse_duration("100000000000h").is_err(), "overflowed, and JetStream refused it forever");
        assert!(parse_duration("5d").is_err());
    }
}
