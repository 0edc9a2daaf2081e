//! `shmq exporter`: serves `/metrics` (Prometheus text format 0.0.4) over HTTP for every
//! queue on the host, or those named.
//!
//! Each scrape lists the queues anew (a new queue appears, a removed one disappears) and
//! reads each with `Queue::inspect`: read-only, never a participant, nothing written to the
//! queue. A queue removed between the listing and its reading is left out. Between scrapes
//! the exporter looks at the queues every `--interval` (default 1 s) so that a consumer
//! stuck for `--stuck-after` is flagged on time however rarely Prometheus scrapes.
//!
//! One thread serves requests one at a time (a scrape takes milliseconds).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tiny_http::{Header, Method, Response, Server};

use super::monitor::Collector;
use super::prometheus::{CONTENT_TYPE, Exposition, Kind};

/// The exporter's state between requests.
struct Exporter {
    names: Vec<String>,
    collector: Collector,
    scrapes: u64,
    errors: u64,
}

impl Exporter {
    /// Lists and reads the queues; the exposition with the exporter's own metrics.
    fn look(&mut self) -> (Vec<shmq::Snapshot>, usize, Duration) {
        let t0 = Instant::now();
        let names = match Collector::names(&self.names) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("shmq exporter: list queues: {e}");
                self.errors += 1;
                Vec::new()
            }
        };
        if self.names.is_empty() {
            self.collector.retain(&names);
        }
        let (snaps, errors) = self.collector.look(&names);
        self.errors += errors.len() as u64;
        (snaps, errors.len(), t0.elapsed())
    }

    fn scrape(&mut self) -> String {
        let (snaps, unreadable, took) = self.look();
        self.scrapes += 1;
        let mut e = Exposition::default();
        for s in &snaps {
            super::prometheus::add_queue(&mut e, s);
        }
        e.add("shmq_exporter_queues", Kind::Gauge, "Queues read in this scrape.", &[], snaps.len() as f64);
        e.add(
            "shmq_exporter_unreadable_queues",
            Kind::Gauge,
            "Queues listed but not readable in this scrape (permission, corrupt, being created).",
            &[],
            unreadable as f64,
        );
        e.add(
            "shmq_exporter_scrape_duration_seconds",
            Kind::Gauge,
            "Time this scrape spent listing and reading the queues.",
            &[],
            took.as_secs_f64(),
        );
        e.add("shmq_exporter_scrapes_total", Kind::Counter, "Scrapes served.", &[], self.scrapes as f64);
        e.add(
            "shmq_exporter_errors_total",
            Kind::Counter,
            "Queues (or listings) that could not be read, over all looks.",
            &[],
            self.errors as f64,
        );
        e.render()
    }
}

/// `shmq exporter --listen ADDR [NAME...]`: serves until killed.
pub fn run(listen: SocketAddr, names: Vec<String>, stuck_after: Duration, interval: Duration) -> Result<()> {
    let server = Server::http(listen).map_err(|e| anyhow!("listen on {listen}: {e}"))?;
    let addr = server.server_addr().to_ip().map_or_else(|| listen.to_string(), |a| a.to_string());
    // The first line of output, for whoever started us with port 0.
    println!("shmq exporter: serving http://{addr}/metrics");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut ex = Exporter { names, collector: Collector::new(stuck_after), scrapes: 0, errors: 0 };
    let interval = interval.max(Duration::from_millis(10));
    let mut next_look = Instant::now() + interval;
    loop {
        let wait = next_look.saturating_duration_since(Instant::now());
        match server.recv_timeout(wait) {
            Ok(Some(req)) => {
                let response = match (req.method(), req.url().split('?').next().unwrap_or("")) {
                    (Method::Get | Method::Head, "/metrics") => {
                        let body = ex.scrape();
                        next_look = Instant::now() + interval;
                        Response::from_string(body).with_header(header(CONTENT_TYPE))
                    }
                    (Method::Get | Method::Head, "/") => {
                        Response::from_string("shmq exporter: the metrics of this host's shmq queues are at /metrics\n")
                            .with_header(header("text/plain; charset=utf-8"))
                    }
                    (Method::Get | Method::Head, _) => Response::from_string("not found: try /metrics\n")
                        .with_status_code(404)
                        .with_header(header("text/plain; charset=utf-8")),
                    _ => Response::from_string("method not allowed\n")
                        .with_status_code(405)
                        .with_header(header("text/plain; charset=utf-8")),
                };
                // A client that went away is its problem, not the exporter's.
                let _ = req.respond(response);
            }
            Ok(None) => {}
            Err(e) => eprintln!("shmq exporter: accept: {e}"),
        }
        if Instant::now() >= next_look {
            // A look between scrapes, for the stuck judgement only.
            let _ = ex.look();
            next_look = Instant::now() + interval;
        }
    }
}

fn header(content_type: &str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()).expect("a valid header")
}
