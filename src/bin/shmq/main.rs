//! `shmq`: create, feed, drain, inspect and remove shared-memory queues by hand, and measure
//! them against the floors and the kernel's pipes and sockets with `shmq bench`.
//!
//! Exit status: 0 success, 1 runtime error (the message names the queue), 2 usage error
//! (bad option, size, duration, name or permissions).
//!
//! Layout: [`args`] parses values, [`commands`] holds one module per queue command, and
//! [`bench`] the benchmark (its module docs describe the method and each transport).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod bench;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use args::{
    TypedSize, parse_capacity, parse_duration, parse_fsync, parse_lag_limit, parse_max_log, parse_max_message,
    parse_name, parse_permissions, parse_retain, parse_subscription_name,
};

/// Message queues in POSIX shared memory between processes on one Linux host.
#[derive(Parser, Debug)]
#[command(name = "shmq", version, about, long_about = None, propagate_version = true)]
#[command(after_help = "Sizes: 64, 4KiB, 1MiB. Durations: 5ms, 2s, 250us.\n\
Exit status: 0 ok, 1 runtime error, 2 usage error.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Queue mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// One producer at a time: the fast path.
    Spsc,
    /// Any number of producers.
    Mpsc,
}

impl From<ModeArg> for shmq::Mode {
    fn from(m: ModeArg) -> shmq::Mode {
        match m {
            ModeArg::Spsc => shmq::Mode::Spsc,
            ModeArg::Mpsc => shmq::Mode::Mpsc,
        }
    }
}

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FromArg {
    /// With the next message sent.
    Now,
}

impl From<FromArg> for shmq::From {
    fn from(f: FromArg) -> shmq::From {
        match f {
            FromArg::Now => shmq::From::Now,
        }
    }
}

/// How a subscription's members acknowledge messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AckArg {
    /// Receiving is acknowledging.
    Auto,
    /// Durable queues only: members ack each message; nacked, expired and abandoned ones are
    /// delivered again, and after --max-deliveries (or a reject) move to the dead-letter queue.
    Explicit,
}

impl From<AckArg> for shmq::Ack {
    fn from(a: AckArg) -> shmq::Ack {
        match a {
            AckArg::Auto => shmq::Ack::Auto,
            AckArg::Explicit => shmq::Ack::Explicit,
        }
    }
}

/// `shmq subs ...`.
#[derive(Subcommand, Debug)]
enum SubsCommand {
    /// Create a subscription: it sees every message sent from now on. Creating one that exists
    /// with the same options does nothing; with other options it fails.
    Create {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Subscription name: 1-48 bytes of [A-Za-z0-9._-], not starting with '.'.
        #[arg(value_parser = parse_subscription_name)]
        name: String,
        /// Never hold producers back by more than this (e.g. 64KiB; at most the capacity
        /// counts). A subscription further behind when a producer needs its space is lapped:
        /// it misses those messages and goes on with the newest. Default: no limit, producers
        /// wait for it.
        #[arg(long, value_parser = parse_lag_limit, value_name = "SIZE")]
        lag_limit: Option<u64>,
        /// Where it starts: now, with the next message sent.
        #[arg(long, value_enum, default_value_t = FromArg::Now)]
        from: FromArg,
        /// How members acknowledge: auto (receiving is acknowledging) or explicit (durable
        /// queues only; no --lag-limit): each message stays in flight until a member acks it,
        /// and one given up on moves to the dead-letter queue QUEUE.NAME.dlq (shmq dlq).
        #[arg(long, value_enum, default_value_t = AckArg::Auto)]
        ack: AckArg,
        /// With --ack explicit: how long a member may hold a message unacknowledged before it
        /// is delivered again, from 1ms to 7 days [default: 30s].
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        ack_wait: Option<Duration>,
        /// With --ack explicit: how many messages the members may hold unacknowledged at once
        /// [default: 256].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(shmq::layout::MAX_IN_FLIGHT)))]
        max_in_flight: Option<u32>,
        /// With --ack explicit: deliveries of a message at most before it moves to the
        /// dead-letter queue [default: 5].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_deliveries: Option<u32>,
    },
    /// List a queue's subscriptions: position, lag, laps, counters and members.
    Ls {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Print JSON (stable, with schema_version).
        #[arg(long)]
        json: bool,
    },
    /// Remove subscriptions: producers stop waiting for them, their members get "closed".
    Rm {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Subscription names ("default" is the one plain `recv` reads).
        #[arg(required = true, value_parser = parse_subscription_name)]
        names: Vec<String>,
    },
}

/// `shmq dlq ...`.
#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List the dead letters waiting in QUEUE.SUB.dlq (those a consumer of it would still
    /// receive), without taking them: original id, deliveries, when moved, length, reason and
    /// a payload preview.
    Ls {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Subscription name (one created with --ack explicit).
        #[arg(value_parser = parse_subscription_name)]
        sub: String,
        /// Print JSON (stable, with schema_version).
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter, by the message's id in QUEUE, with its whole payload (escaped as
    /// recv prints it; --hex or --json for the exact bytes). Takes nothing.
    Show {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Subscription name.
        #[arg(value_parser = parse_subscription_name)]
        sub: String,
        /// The message's id in QUEUE (as dlq ls prints it).
        id: u64,
        /// Print JSON (stable, with schema_version; the payload in base64).
        #[arg(long)]
        json: bool,
        /// Print the payload as lowercase hex.
        #[arg(long, conflicts_with = "json")]
        hex: bool,
    },
    /// Remove every dead letter of the subscription (receives them all from QUEUE.SUB.dlq)
    /// and print how many.
    Purge {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        queue: String,
        /// Subscription name.
        #[arg(value_parser = parse_subscription_name)]
        sub: String,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `shmq log ...`.
#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Print the messages of a log: id, time, frame size, length, crc and a payload preview
    /// (the whole payload in base64 with --json). Validated frames only; a damaged log prints
    /// up to the damage, then fails.
    Dump {
        /// The queue whose log to read (it must exist in memory; otherwise give --dir).
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        name: Option<String>,
        /// The log directory (for a queue not in memory, e.g. before a restore).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Start at this message id (default: the oldest retained).
        #[arg(long, value_name = "ID")]
        from: Option<u64>,
        /// One JSON object per line (stable, with schema_version).
        #[arg(long)]
        json: bool,
    },
    /// Check a log: exit 0 only if every header, META and frame is valid and nothing follows
    /// the end (what a recovery would cut). Changes nothing.
    Verify {
        /// The queue whose log to check (it must exist in memory; otherwise give --dir).
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        name: Option<String>,
        /// The log directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a queue.
    Create {
        /// Queue name: 1-200 bytes of [A-Za-z0-9._-], not starting with '.'.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Bytes in the ring: a power of two from 1KiB to 1TiB.
        #[arg(long, value_parser = parse_capacity, default_value = "1MiB")]
        capacity: u64,
        /// Largest message: from 1 byte to half the capacity, 16 bytes less on a durable
        /// queue [default: 64KiB, or that limit if smaller].
        #[arg(long, value_parser = parse_max_message)]
        max_message: Option<TypedSize>,
        /// spsc (one producer, fastest) or mpsc (many producers).
        #[arg(long, value_enum, default_value_t = ModeArg::Mpsc)]
        mode: ModeArg,
        /// Permission bits in octal; must include 600 (owner read and write).
        #[arg(long, value_parser = parse_permissions, default_value = "600")]
        permissions: u32,
        /// Make the queue durable: every message is also written to a log in DIR (created
        /// owner-only if missing). If DIR holds the log of a queue that no longer exists in
        /// memory (after a host restart), the queue is restored from it.
        #[arg(long, value_name = "DIR")]
        durable: Option<PathBuf>,
        /// When the log is synced: never (the kernel writes it back; survives process
        /// crashes), always (every send returns once on disk) or interval:DUR [default: never].
        #[arg(long, requires = "durable", value_parser = parse_fsync, value_name = "POLICY")]
        fsync: Option<shmq::Fsync>,
        /// The most bytes the log holds; producers wait there [default: 8GiB].
        #[arg(long, requires = "durable", value_parser = parse_max_log, value_name = "SIZE")]
        max_log: Option<u64>,
        /// What the log keeps once every subscription released it: acked (nothing) or at
        /// least SIZE of the latest stream [default: acked].
        #[arg(long, requires = "durable", value_parser = parse_retain, value_name = "acked|SIZE")]
        retain: Option<shmq::Retain>,
    },
    /// Send messages: each MESSAGE argument is one; with none, each line of stdin is one.
    Send {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Messages to send, in order.
        #[arg(conflicts_with = "file")]
        messages: Vec<String>,
        /// Send the contents of a file as one message.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// How long to wait for room in a full queue, per message (0: fail at once).
        #[arg(long, value_parser = parse_duration, default_value = "0", value_name = "DUR")]
        timeout: Duration,
        /// Print each message's id (its position in the queue's stream) on its own line.
        #[arg(long)]
        ids: bool,
    },
    /// Receive messages and print each on its own line.
    ///
    /// Text is printed as is. A message with control characters or bytes that are not UTF-8
    /// is escaped, unless --hex or --json is given: \n, \t, \r and \\ for those characters,
    /// \x00 to \x1f and \x7f for the other control bytes and \xNN for bytes that are not
    /// UTF-8 (so one message is always one line).
    Recv {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// How many messages to receive.
        #[arg(long, short = 'n', default_value_t = 1, conflicts_with = "follow")]
        count: u64,
        /// How long to wait for each message (default: forever; 0: only what is there).
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        timeout: Option<Duration>,
        /// Keep receiving until the queue (or the subscription) is removed, or --timeout passes
        /// without a message.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Print each message as lowercase hex.
        #[arg(long, conflicts_with = "json")]
        hex: bool,
        /// Print each message as a JSON object on its own line.
        #[arg(long)]
        json: bool,
        /// Join this subscription as one of its members (they share its messages) instead of
        /// reading the default one. A lapped subscription's missed bytes are reported on
        /// stderr and receiving goes on.
        #[arg(long, short = 's', value_parser = parse_subscription_name, value_name = "SUB")]
        subscription: Option<String>,
    },
    /// Show a queue's configuration, depth, counters, participants and subscriptions.
    ///
    /// A participant whose process ended is shown dead at once. Whether a consumer is stuck
    /// (holding messages without taking any) takes watching: with --stuck-after, stat looks
    /// at the queue over that long and flags those that made no progress the whole time.
    Stat {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Print JSON (stable, with schema_version); the same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format: text, json, or prometheus (text exposition format 0.0.4).
        #[arg(long, value_enum, default_value_t = commands::stat::Format::Text)]
        format: commands::stat::Format,
        /// Measure send/receive rates over this interval (e.g. 1s).
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        interval: Option<Duration>,
        /// Watch the queue this long (5s if no value is given) and flag consumers and
        /// members that held messages without taking any for all of it as stuck.
        #[arg(long, value_parser = parse_duration, value_name = "DUR", num_args = 0..=1, default_missing_value = "5s")]
        stuck_after: Option<Duration>,
    },
    /// A live view of every queue (or those named): depth, rates, lag, stuck and dead
    /// participants. Keys: q quit, s sort column, r reverse. Plain lines when stdout is not a
    /// terminal.
    Top {
        /// Queue names (default: every queue on this host, new ones as they appear).
        #[arg(value_parser = parse_name)]
        names: Vec<String>,
        /// Refresh interval.
        #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DUR")]
        interval: Duration,
        /// Flag a consumer or member stuck after holding messages this long without taking any.
        #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DUR")]
        stuck_after: Duration,
        /// Print one refresh (rates over --interval) and exit.
        #[arg(long)]
        once: bool,
        /// Print JSON (stable, with schema_version; with --once one document, else one a line).
        #[arg(long)]
        json: bool,
        /// Sort queues by this column.
        #[arg(long, value_enum, default_value_t = commands::top::SortKey::Name)]
        sort: commands::top::SortKey,
        /// Reverse the sort.
        #[arg(long)]
        reverse: bool,
    },
    /// Serve Prometheus metrics of every queue on this host (or those named) over HTTP at
    /// /metrics. Reads the queues only: never a participant.
    Exporter {
        /// Address to listen on (port 0: any free port; the first line printed says which).
        #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Queue names (default: every queue on this host, new ones as they appear).
        #[arg(value_parser = parse_name)]
        names: Vec<String>,
        /// Flag a consumer or member stuck after holding messages this long without taking any.
        #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DUR")]
        stuck_after: Duration,
        /// How often to look at the queues between scrapes, for the stuck judgement.
        #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DUR")]
        interval: Duration,
    },
    /// List every shmq queue on this host, flagging those whose participants are all dead.
    Ls {
        /// Print JSON (stable, with schema_version).
        #[arg(long)]
        json: bool,
    },
    /// Remove queues: unlink the names and wake every waiter.
    Rm {
        /// Queue names.
        #[arg(required = true, value_parser = parse_name)]
        names: Vec<String>,
    },
    /// Create, list and remove a queue's subscriptions (each sees every message sent after
    /// its creation; the members that join one share its messages).
    Subs {
        #[command(subcommand)]
        command: SubsCommand,
    },
    /// List, show and purge the dead letters of a subscription with explicit acks.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Read a durable queue's log directory: dump its messages, verify it.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Journal a durable queue until SIGINT or SIGTERM: copy what producers sent into the
    /// log and sync it (unless its policy is never) every interval. It takes no participant
    /// slot. Prints a line per second on a terminal, and a summary when it stops.
    Journal {
        /// Queue name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// How often [default: the queue's sync interval, or 100ms].
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        interval: Option<Duration>,
    },
    /// Forward a queue to NATS JetStream or JetStream to a queue, at least once: runs the
    /// `shmq-bridge` program (next to this one, or on the PATH) with these arguments
    /// (`shmq bridge --help` for its options).
    #[command(disable_help_flag = true)]
    Bridge {
        /// Arguments for shmq-bridge, e.g. --from-queue orders --to-subject orders.in --stream ORDERS.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Measure shmq against bare floors, pipes and Unix sockets (two pinned processes).
    #[command(long_about = bench::LONG_HELP)]
    Bench(bench::BenchArgs),
    /// The benchmark's peer process (started by `shmq bench`).
    #[command(hide = true, name = "bench-peer")]
    BenchPeer {
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
    },
}

/// The subcommand being run, for [`usage_error`] to show its usage.
static SUBCOMMAND: OnceLock<String> = OnceLock::new();

/// A usage error found after parsing: clap's message with the running subcommand's usage
/// (`Usage: shmq create [OPTIONS] <NAME>`), exit status 2.
pub fn usage_error(msg: impl std::fmt::Display) -> ! {
    let mut cli = Cli::command();
    // Builds the subcommands' names ("shmq create") that their usage lines print.
    cli.build();
    match SUBCOMMAND.get().and_then(|name| cli.find_subcommand_mut(name)) {
        Some(sub) => sub.error(clap::error::ErrorKind::ValueValidation, msg).exit(),
        None => cli.error(clap::error::ErrorKind::ValueValidation, msg).exit(),
    }
}

/// The error and its causes, joined by `: `, each said once. A cause whose text already ends
/// the message so far is left out: the library's I/O errors include their OS error in their
/// own text and also report it as their source.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    if let Some(name) = matches.subcommand_name() {
        let _ = SUBCOMMAND.set(name.to_owned());
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if !matches!(cli.command, Command::Bench(_) | Command::BenchPeer { .. }) {
        // Like other Unix tools, end quietly when the reader of our output goes away
        // (`shmq ls | head`). The bench keeps Rust's default (EPIPE as an error) so that a
        // dead peer is reported, not fatal.
        // SAFETY: sets a signal disposition to its default before any other thread runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Create { name, capacity, max_message, mode, permissions, durable, fsync, max_log, retain } => {
            let durable = durable.map(|dir| commands::admin::Durable { dir, fsync, max_log, retain });
            commands::admin::create(&name, capacity, max_message, mode, permissions, durable)
        }
        Command::Send { name, messages, file, timeout, ids } => {
            commands::send::run(&name, messages, file, timeout, ids)
        }
        Command::Recv { name, count, timeout, follow, hex, json, subscription } => {
            let format = if hex {
                commands::recv::Format::Hex
            } else if json {
                commands::recv::Format::Json
            } else {
                commands::recv::Format::Text
            };
            let count = if follow { None } else { Some(count) };
            commands::recv::run(&name, subscription.as_deref(), count, timeout, format)
        }
        Command::Stat { name, json, format, interval, stuck_after } => {
            let format = if json { commands::stat::Format::Json } else { format };
            commands::stat::stat(&name, format, interval, stuck_after)
        }
        Command::Top { names, interval, stuck_after, once, json, sort, reverse } => {
            commands::top::run(commands::top::TopArgs { names, interval, stuck_after, once, json, sort, reverse })
        }
        Command::Exporter { listen, names, stuck_after, interval } => {
            commands::exporter::run(listen, names, stuck_after, interval)
        }
        Command::Ls { json } => commands::stat::ls(json),
        Command::Rm { names } => commands::admin::rm(&names),
        Command::Subs { command } => match command {
            SubsCommand::Create { queue, name, lag_limit, from, ack, ack_wait, max_in_flight, max_deliveries } => {
                let acks = commands::subs::AckOptions { ack, ack_wait, max_in_flight, max_deliveries };
                commands::subs::create(&queue, &name, lag_limit, from.into(), acks)
            }
            SubsCommand::Ls { queue, json } => commands::subs::ls(&queue, json),
            SubsCommand::Rm { queue, names } => commands::subs::rm(&queue, &names),
        },
        Command::Dlq { command } => match command {
            DlqCommand::Ls { queue, sub, json } => commands::dlq::ls(&queue, &sub, json),
            DlqCommand::Show { queue, sub, id, json, hex } => commands::dlq::show(&queue, &sub, id, json, hex),
            DlqCommand::Purge { queue, sub, yes } => commands::dlq::purge(&queue, &sub, yes),
        },
        Command::Log { command } => match command {
            LogCommand::Dump { name, dir, from, json } => {
                commands::log::dir_of(name.as_deref(), dir).and_then(|d| commands::log::dump(&d, from, json))
            }
            LogCommand::Verify { name, dir } => {
                commands::log::dir_of(name.as_deref(), dir).and_then(|d| commands::log::verify(&d))
            }
        },
        Command::Journal { name, interval } => commands::journal::run(&name, interval),
        Command::Bridge { args } => commands::bridge::exec(&args),
        Command::Bench(a) => bench::run(a),
        Command::BenchPeer { cpu } => bench::peer::run(cpu),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if commands::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("shmq: error: {}", render(&e));
            ExitCode::from(1)
        }
    }
}
