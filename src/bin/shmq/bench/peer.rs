//! The peer process of `shmq bench` (hidden subcommand `shmq bench-peer`).
//!
//! It pins itself, says `hello` on stdout, then serves runs from lines on stdin:
//!
//! ```text
//! leader                         peer
//! run {RunSpec as JSON}    ->    joins the transport
//!                          <-    ready
//! (warm-up round trips)          echoes `warmup` messages, verifying each
//! go N                     ->    echoes N more (repeated: one per chunk)
//! stream M                 ->    receives M streamed messages, verifying each
//!                          <-    done   (repeated: one per chunk)
//! end                      ->    leaves the transport
//! quit (or EOF)            ->    exits
//! ```
//! For `shmq bench --fanout` the spec names a queue to join as a consumer or subscription
//! member (`RunSpec::member`) instead:
//!
//! ```text
//! run {RunSpec as JSON}    ->    joins the queue or subscription
//!                          <-    ready
//! stream M                 ->    receives and checks messages 0..M (its share of them)
//!                          <-    stopped COUNT SUM SUMSQ   (at its first end marker)
//!                          <-    extra                     (at each later end marker)
//!                          <-    closed                    (the leader removed the queue)
//! ```
//! For `shmq bench --durable` the spec names a role (`RunSpec::durable`): write or read a
//! disk-floor file, ping or pong, produce or consume:
//!
//! ```text
//! run {RunSpec as JSON}    ->    opens its files or queues
//!                          <-    ready
//! go                       ->    plays its role
//!                          <-    result {RoleResult as JSON}
//! ```
//! For `shmq bench --acks` the line is `acks {acks::Role as JSON}` instead: a member that
//! streams (and acks), one that holds messages until it is killed, or one that waits for
//! them to be delivered again (see `acks::serve`).
//!
//! Any failure is reported as `error <message>` and ends the process. The peer asks the
//! kernel to kill it if the leader dies, so a spinning peer never outlives its leader.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, anyhow, bail};

use super::floors::{FloorEnd, FloorMap};
use super::transports::{self, Endpoint, ShmqEnd};
use super::{Kind, RunSpec, check, pattern, pin};

/// Runs the peer until the leader says `quit` or closes the pipe.
pub fn run(cpu: Option<usize>) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("ask to be stopped with the leader")?;
    if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
        bail!("the leader is gone");
    }
    if let Some(c) = cpu {
        pin(c)?;
    }
    let stdin = std::io::stdin();
    let mut ctl = Control { input: stdin.lock(), output: std::io::stdout().lock() };
    ctl.say("hello")?;
    loop {
        let line = ctl.hear()?;
        if line.is_empty() || line == "quit" {
            return Ok(());
        }
        let result = match line.strip_prefix("run ") {
            None if line.starts_with("acks ") => super::acks::serve(&mut ctl, &line["acks ".len()..]),
            Some(json) => serde_json::from_str::<RunSpec>(json).map_err(anyhow::Error::from).and_then(|s| {
                match (&s.member, &s.durable) {
                    (Some(m), _) => super::fanout::serve_member(&mut ctl, &s, m),
                    (None, Some(d)) => super::durable::serve(&mut ctl, &s, d),
                    (None, None) => serve(&mut ctl, &s),
                }
            }),
            None => Err(anyhow!("unknown command {line:?}")),
        };
        if let Err(e) = result {
            let msg = format!("{e:#}").replace('\n', " ");
            let _ = ctl.say(&format!("error {msg}"));
            std::process::exit(1);
        }
    }
}

/// The control pipe, peer side.
pub struct Control<R: BufRead, W: Write> {
    input: R,
    output: W,
}

impl<R: BufRead, W: Write> Control<R, W> {
    /// Writes one line.
    pub fn say(&mut self, line: &str) -> Result<()> {
        writeln!(self.output, "{line}")?;
        self.output.flush()?;
        Ok(())
    }

    /// The next line; empty at EOF.
    pub fn hear(&mut self) -> Result<String> {
        let mut line = String::new();
        self.input.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }
}

fn serve<R: BufRead, W: Write>(ctl: &mut Control<R, W>, spec: &RunSpec) -> Result<()> {
    let r = &spec.resource;
    match spec.config.kind {
        Kind::Shmq => {
            let mut e = ShmqEnd::open(r, false, spec.config.wait.to_shmq())?;
            ctl.say("ready")?;
            echo_and_drain(ctl, &mut e, spec)
        }
        Kind::ShmqC => {
            let path = spec.libshmq.as_deref().ok_or_else(|| anyhow!("shmq-c: the leader named no libshmq.so"))?;
            let lib = super::c_abi::load(path)?;
            let mut e = super::c_abi::CShmqEnd::open(lib, r, false, spec.config.wait)?;
            ctl.say("ready")?;
            echo_and_drain(ctl, &mut e, spec)
        }
        Kind::SpinFloor | Kind::FutexFloor => {
            let map = FloorMap::open(r, spec.size)?;
            let mut e = FloorEnd::new(map, false, spec.config.kind == Kind::FutexFloor);
            ctl.say("ready")?;
            echo_and_drain(ctl, &mut e, spec)
        }
        Kind::Pipe => {
            let mut e = transports::peer_fifos(r)?;
            ctl.say("ready")?;
            echo_and_drain(ctl, &mut e, spec)
        }
        Kind::Uds => {
            let mut e = transports::peer_uds(r)?;
            ctl.say("ready")?;
            echo_and_drain(ctl, &mut e, spec)
        }
    }
}

/// Echoes the warm-up and the measured round trips, then takes the stream.
fn echo_and_drain<R: BufRead, W: Write, E: Endpoint>(ctl: &mut Control<R, W>, e: &mut E, spec: &RunSpec) -> Result<()> {
    let pat = pattern(spec.size);
    let mut buf = vec![0u8; spec.size];
    let mut seq = 0u64;
    let mut echo = |e: &mut E, n: u64| -> Result<()> {
        for _ in 0..n {
            e.recv(&mut buf)?;
            if !check(&buf, seq, &pat) {
                bail!("message {seq} arrived corrupted");
            }
            e.send(&buf)?;
            seq += 1;
        }
        Ok(())
    };
    echo(e, spec.warmup)?;
    let mut out = vec![0u8; spec.size];
    loop {
        let line = ctl.hear()?;
        let count = |word: &str| line.strip_prefix(word).and_then(|n| n.trim().parse::<u64>().ok());
        if let Some(n) = count("go ") {
            echo(e, n)?;
        } else if let Some(m) = count("stream ") {
            e.start_stream()?;
            let mut next = 0u64;
            while next < m {
                e.recv_some(&mut out, m - next, |b| {
                    let ok = check(b, next, &pat);
                    next += 1;
                    ok
                })
                .with_context(|| format!("streamed message {next}"))?;
            }
            ctl.say("done")?;
        } else if line == "end" {
            return Ok(());
        } else {
            bail!("unexpected {line:?} from the leader");
        }
    }
}
