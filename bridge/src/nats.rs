//! Connecting to NATS (credentials, reconnects, logging of connection events) and checking
//! or creating the stream.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, context::CreateStreamErrorKind, context::GetStreamErrorKind, stream};

use crate::stats::Stats;
use crate::{Args, Stop, log};

/// A JetStream context, and its client.
#[derive(Clone)]
pub struct Js {
    pub ctx: jetstream::Context,
    client: async_nats::Client,
}

impl Js {
    /// Whether the client is connected to a server now (the client's own connection state:
    /// the first connection is made in the background, so "connect" returning says nothing).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Connects with the credentials given (or none), retrying the first connection as well as
/// every later one forever: the bridge outlives nats-server restarts.
pub async fn connect(args: &Args) -> anyhow::Result<Js> {
    let mut opts = async_nats::ConnectOptions::new();
    if let Some(path) = &args.creds {
        opts = opts.credentials_file(path).await.with_context(|| format!("reading {}", path.display()))?;
    }
    if let (Some(u), Some(p)) = (&args.user, &args.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &args.token {
        opts = opts.token(t.clone());
    }
    if let Some(s) = &args.nkey_seed {
        opts = opts.nkey(s.clone());
    }
    if let Some(ca) = &args.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    opts = opts
        .name(format!("shmq-bridge {}", std::process::id()))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(args.timeout)
        .request_timeout(Some(args.timeout))
        // At most 1 s between attempts, so a restarted server is found again quickly.
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => log::info(format_args!("connected to NATS")),
                async_nats::Event::Disconnected => log::warn(format_args!("disconnected from NATS; reconnecting")),
                other => log::warn(format_args!("NATS: {other}")),
            }
        });
    log::info(format_args!("connecting to {}", args.nats_url));
    let urls: Vec<async_nats::ServerAddr> = args
        .nats_url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad --nats-url {:?}", args.nats_url))?;
    let client = opts.connect(urls).await.context("connecting to NATS")?;
    let ctx = jetstream::ContextBuilder::new().timeout(args.timeout).build(client.clone());
    Ok(Js { ctx, client })
}

/// Checks that stream `name` exists and captures `subject`, or creates it (file storage,
/// `subject` as its subject). Retries, for as long as it takes, while JetStream does not
/// answer (a bridge started before its server waits for it); a configuration JetStream
/// refuses (the subject taken by another stream, say) is an error at once. `None` if a stop
/// was asked for first. Keeps the counters file fresh while it waits (`connected` in it says
/// whether a server answers).
pub async fn ensure_stream(
    js: &Js,
    args: &Args,
    subject: &str,
    stop: &Stop,
    stats: &Stats,
) -> anyhow::Result<Option<stream::Stream>> {
    let name = &args.stream;
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        if stop.asked() {
            return Ok(None);
        }
        stats.maybe_write(js.is_connected());
        match js.ctx.get_stream(name).await {
            Ok(mut s) => match s.info().await {
                Ok(info) => {
                    let subjects = &info.config.subjects;
                    if !subjects.iter().any(|p| subject_matches(p, subject)) {
                        bail!(
                            "stream {name} exists but does not capture subject {subject} (its subjects: {subjects:?})"
                        );
                    }
                    log::info(format_args!("stream {name} exists and captures {subject} (its subjects: {subjects:?})"));
                    return Ok(Some(s));
                }
                Err(e) => log::warn(format_args!("reading stream {name}'s configuration: {e}; retrying")),
            },
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.to_owned()],
                    storage: stream::StorageType::File,
                    duplicate_window: args.duplicate_window,
                    ..Default::default()
                };
                match js.ctx.create_stream(config).await {
                    Ok(s) => {
                        log::info(format_args!("created stream {name} (file storage) for subject {subject}"));
                        return Ok(Some(s));
                    }
                    Err(e) => match e.kind() {
                        // JetStream answered no: asking again gets the same answer, unless
                        // another bridge made the stream meanwhile (then: look again).
                        CreateStreamErrorKind::JetStream(j)
                            if j.error_code() != jetstream::ErrorCode::STREAM_NAME_EXIST =>
                        {
                            bail!("JetStream refused to create stream {name} for subject {subject}: {j}")
                        }
                        _ => log::warn(format_args!("creating stream {name}: {e}; looking again")),
                    },
                }
            }
            Err(e) => log::warn(format_args!("looking up stream {name}: {e}; retrying")),
        }
        attempt += 1;
        if attempt.is_multiple_of(60) {
            log::warn(format_args!("still no answer about stream {name} after {:.0?}; waiting", started.elapsed()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether NATS subject pattern `pattern` (with `*` for one token and a final `>` for one
/// or more) matches the literal or pattern `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_patterns_match_as_nats_does() {
        assert!(subject_matches("orders", "orders"));
        assert!(subject_matches("orders.*", "orders.in"));
        assert!(subject_matches("orders.>", "orders.in.eu"));
        assert!(subject_matches(">", "a"));
        assert!(subject_matches("orders.>", "orders.*"));
        assert!(!subject_matches("orders.*", "orders.in.eu"));
        assert!(!subject_matches("orders.*", "orders.>"));
        assert!(!subject_matches("orders.>", "orders"));
        assert!(!subject_matches("orders", "orders.in"));
        assert!(!subject_matches("orders.in", "orders.out"));
    }
}
