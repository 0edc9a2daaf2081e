//! `shmq top [NAME...]`: a live view of every queue (or those named), refreshed every
//! `--interval`: depth, rates in and out (from counter deltas), producers and consumers
//! (alive, stuck, dead), each subscription's lag, full events, sleeps and wakes per second,
//! and the participants that are stuck or dead.
//!
//! On a terminal it is a full-screen view (ratatui over crossterm): `q` or Esc quits, `s`
//! changes the sort column, `r` reverses it, the arrow keys, PgUp/PgDn and Home/End scroll
//! the focused table (Tab moves the focus), and it follows the terminal's size. Names too
//! long for their column are cut in the middle, so that both ends stay visible. When stdout
//! is not a terminal it prints plain lines every refresh, and `--once` prints one refresh
//! (rates over `--interval`) and exits; `--json` prints [`TopJson`] documents instead.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row as TRow, Table, TableState};
use serde::Serialize;
use shmq::{Role, Snapshot};

use super::monitor::{self, Census, Collector, Rates, Timed};
use crate::args::format_size;

/// The column `top` sorts queues by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Queue name.
    Name,
    /// Messages waiting.
    Depth,
    /// Messages sent per second.
    In,
    /// Messages received per second.
    Out,
    /// The largest subscription lag.
    Lag,
    /// Stuck and dead participants.
    Problems,
}

impl SortKey {
    const ALL: [SortKey; 6] =
        [SortKey::Name, SortKey::Depth, SortKey::In, SortKey::Out, SortKey::Lag, SortKey::Problems];

    fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|&k| k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Depth => "depth",
            SortKey::In => "in",
            SortKey::Out => "out",
            SortKey::Lag => "lag",
            SortKey::Problems => "problems",
        }
    }
}

/// What `top` was asked for.
pub struct TopArgs {
    pub names: Vec<String>,
    pub interval: Duration,
    pub stuck_after: Duration,
    pub once: bool,
    pub json: bool,
    pub sort: SortKey,
    pub reverse: bool,
}

/// One queue at one refresh: its snapshot, and rates since the previous one (none at the
/// first look).
struct Row {
    snap: Snapshot,
    rates: Option<Rates>,
    /// Messages received per second by each subscription, by name.
    sub_rates: HashMap<String, f64>,
}

/// Looks at the queues and computes rates against the previous look.
struct Sampler {
    names: Vec<String>,
    collector: Collector,
    prev: HashMap<String, Timed>,
    errors: Vec<(String, String)>,
}

impl Sampler {
    fn sample(&mut self) -> Vec<Row> {
        self.errors.clear();
        let names = match Collector::names(&self.names) {
            Ok(n) => n,
            Err(e) => {
                self.errors.push(("(list)".into(), e.to_string()));
                Vec::new()
            }
        };
        self.collector.retain(&names);
        let (snaps, errors) = self.collector.look(&names);
        self.errors.extend(errors.into_iter().map(|(n, e)| (n, e.to_string())));
        let now = Instant::now();
        let mut rows = Vec::new();
        let mut next = HashMap::new();
        for snap in snaps {
            let name = snap.config.name.clone();
            let (rates, sub_rates) = match self.prev.get(&name) {
                Some(p) if p.snap.config.created_unix_ns == snap.config.created_unix_ns => {
                    let secs = now.duration_since(p.at).as_secs_f64();
                    let subs = snap
                        .subscriptions
                        .iter()
                        .map(|s| {
                            let before = p.snap.subscriptions.iter().find(|x| x.name == s.name);
                            let r = before.map_or(0.0, |b| {
                                s.received.messages.saturating_sub(b.received.messages) as f64 / secs.max(1e-9)
                            });
                            (s.name.clone(), r)
                        })
                        .collect();
                    (Some(Rates::between(&p.snap, &snap, secs)), subs)
                }
                _ => (None, HashMap::new()),
            };
            next.insert(name, Timed { snap: snap.clone(), at: now });
            rows.push(Row { snap, rates, sub_rates });
        }
        self.prev = next;
        rows
    }
}

fn sort_rows(rows: &mut [Row], key: SortKey, reverse: bool) {
    let problems = |r: &Row| {
        let p = monitor::census(&r.snap, Role::Producer);
        let c = monitor::census(&r.snap, Role::Consumer);
        p.dead + c.dead + c.stuck
    };
    let rate = |r: &Row, f: fn(&Rates) -> f64| r.rates.as_ref().map_or(0.0, f);
    rows.sort_by(|a, b| {
        let name = a.snap.config.name.cmp(&b.snap.config.name);
        // Numbers sort largest first (the busiest on top); names alphabetically.
        let o = match key {
            SortKey::Name => name,
            SortKey::Depth => b.snap.messages.cmp(&a.snap.messages),
            SortKey::In => rate(b, |r| r.sent_msgs_per_s).total_cmp(&rate(a, |r| r.sent_msgs_per_s)),
            SortKey::Out => rate(b, |r| r.received_msgs_per_s).total_cmp(&rate(a, |r| r.received_msgs_per_s)),
            SortKey::Lag => monitor::max_lag(&b.snap).cmp(&monitor::max_lag(&a.snap)),
            SortKey::Problems => problems(b).cmp(&problems(a)),
        };
        let o = o.then(name);
        if reverse { o.reverse() } else { o }
    });
}

/// `shmq top`.
pub fn run(a: TopArgs) -> Result<()> {
    let mut s = Sampler {
        names: a.names.clone(),
        collector: Collector::new(a.stuck_after),
        prev: HashMap::new(),
        errors: Vec::new(),
    };
    let interval = a.interval.max(Duration::from_millis(10));
    if a.once {
        // Two looks, `interval` apart: the rates need both.
        s.sample();
        std::thread::sleep(interval);
        let mut rows = s.sample();
        sort_rows(&mut rows, a.sort, a.reverse);
        return print_plain(&rows, &s, &a, interval);
    }
    if !std::io::stdout().is_terminal() || a.json {
        loop {
            let mut rows = s.sample();
            sort_rows(&mut rows, a.sort, a.reverse);
            print_plain(&rows, &s, &a, interval)?;
            std::thread::sleep(interval);
        }
    }
    tui(&mut s, &a, interval)
}

/// `top --once --json` (and `top --json`, one document a line): the documented shape, also
/// in docs/MONITORING.md.
#[derive(Serialize)]
pub struct TopJson {
    schema_version: u32,
    /// When the last look was taken, nanoseconds since the Unix epoch.
    taken_unix_ns: u64,
    interval_s: f64,
    stuck_after_s: f64,
    queues: Vec<QueueJson>,
    /// Queues that could not be read: `{ "queue", "error" }`.
    errors: Vec<ErrorJson>,
}

#[derive(Serialize)]
struct ErrorJson {
    queue: String,
    error: String,
}

#[derive(Serialize)]
struct QueueJson {
    name: String,
    mode: String,
    capacity: u64,
    messages: u64,
    used_bytes: u64,
    percent_full: f64,
    closed: bool,
    /// Null at the first look of a queue (rates need two).
    rates: Option<Rates>,
    producers: Census,
    consumers: Census,
    subscriptions: Vec<SubJson>,
    /// Every participant with its state.
    participants: Vec<PartJson>,
    /// A durable queue's log files' size on disk (null for a volatile queue).
    log_bytes: Option<u64>,
    /// A durable queue's bytes sent and not yet synced (null for a volatile queue).
    durable_lag_bytes: Option<u64>,
}

#[derive(Serialize)]
struct SubJson {
    name: String,
    lag_bytes: u64,
    lag_messages: u64,
    detached: bool,
    received_msgs_per_s: Option<f64>,
    members: Census,
}

#[derive(Serialize)]
struct PartJson {
    slot: usize,
    role: &'static str,
    pid: u32,
    subscription: Option<String>,
    state: &'static str,
    /// Null when not judged (producers; the first look).
    stalled_s: Option<f64>,
    heartbeat_unix_ns: u64,
}

fn member_census(sub: &shmq::SubscriptionInfo) -> Census {
    let mut c = Census::default();
    for m in &sub.members {
        match monitor::state(m.alive, m.progress) {
            "dead" => c.dead += 1,
            "stuck" => c.stuck += 1,
            _ => c.alive += 1,
        }
    }
    c
}

fn to_json(rows: &[Row], s: &Sampler, a: &TopArgs, interval: Duration) -> TopJson {
    let queues = rows
        .iter()
        .map(|r| {
            let sn = &r.snap;
            let subs_of = monitor::subscription_of(sn);
            QueueJson {
                name: sn.config.name.clone(),
                mode: sn.config.mode.to_string(),
                capacity: sn.config.capacity,
                messages: sn.messages,
                used_bytes: sn.used_bytes,
                percent_full: monitor::percent(sn.used_bytes, sn.config.capacity),
                closed: sn.closed,
                rates: r.rates,
                producers: monitor::census(sn, Role::Producer),
                consumers: monitor::census(sn, Role::Consumer),
                log_bytes: monitor::log_bytes(sn),
                durable_lag_bytes: monitor::durable_lag(sn),
                subscriptions: sn
                    .subscriptions
                    .iter()
                    .map(|x| SubJson {
                        name: x.name.clone(),
                        lag_bytes: x.lag_bytes,
                        lag_messages: x.lag_messages,
                        detached: x.detached,
                        received_msgs_per_s: r.rates.map(|_| r.sub_rates.get(&x.name).copied().unwrap_or(0.0)),
                        members: member_census(x),
                    })
                    .collect(),
                participants: sn
                    .participants
                    .iter()
                    .map(|p| PartJson {
                        slot: p.slot,
                        role: monitor::role(p.role),
                        pid: p.pid,
                        subscription: monitor::participant_subscription(&subs_of, p).map(str::to_owned),
                        state: monitor::state(p.alive, p.progress),
                        stalled_s: super::stat::stalled_s(p.progress),
                        heartbeat_unix_ns: p.heartbeat_unix_ns,
                    })
                    .collect(),
            }
        })
        .collect();
    TopJson {
        schema_version: super::SCHEMA_VERSION,
        taken_unix_ns: rows.iter().map(|r| r.snap.taken_unix_ns).max().unwrap_or_else(now_ns),
        interval_s: interval.as_secs_f64(),
        stuck_after_s: a.stuck_after.as_secs_f64(),
        queues,
        errors: s.errors.iter().map(|(q, e)| ErrorJson { queue: q.clone(), error: e.clone() }).collect(),
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// `HH:MM:SS` UTC.
fn clock() -> String {
    let s = now_ns() / 1_000_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn byte_rate(v: f64) -> String {
    format!("{}/s", format_size(v.round() as u64))
}

fn census_text(c: Census, stuck: bool) -> String {
    if stuck {
        format!("{} alive, {} stuck, {} dead", c.alive, c.stuck, c.dead)
    } else {
        format!("{} alive, {} dead", c.alive + c.stuck, c.dead)
    }
}

/// The participants worth a look: stuck or dead, or stalled.
fn problems(sn: &Snapshot) -> Vec<String> {
    let subs = monitor::subscription_of(sn);
    sn.participants
        .iter()
        .filter_map(|p| {
            let st = monitor::state(p.alive, p.progress);
            let stalled = p.progress.stalled_for();
            if st == "alive" && stalled.is_zero() {
                return None;
            }
            let sub = monitor::participant_subscription(&subs, p).map_or(String::new(), |s| format!(" ({s})"));
            let what = match st {
                "dead" => "DEAD: its process ended".to_owned(),
                "stuck" => format!("STUCK: holding messages without progress for {:.1}s", stalled.as_secs_f64()),
                _ => format!("stalled for {:.1}s", stalled.as_secs_f64()),
            };
            Some(format!("{} pid {} slot {}{sub}: {what}", monitor::role(p.role), p.pid, p.slot))
        })
        .collect()
}

fn print_plain(rows: &[Row], s: &Sampler, a: &TopArgs, interval: Duration) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if a.json {
        let j = to_json(rows, s, a, interval);
        if a.once {
            writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        } else {
            writeln!(out, "{}", serde_json::to_string(&j)?)?;
        }
        out.flush()?;
        return Ok(());
    }
    let t = clock();
    if rows.is_empty() {
        writeln!(out, "{t} no queues")?;
    }
    for r in rows {
        let sn = &r.snap;
        let rates = match &r.rates {
            Some(x) => format!(
                "in {} msg/s ({}) out {} msg/s ({}) full {}/s sleeps {}/s wakes {}/s",
                rate(x.sent_msgs_per_s),
                byte_rate(x.sent_bytes_per_s),
                rate(x.received_msgs_per_s),
                byte_rate(x.received_bytes_per_s),
                rate(x.full_events_per_s),
                rate(x.wait_calls_per_s),
                rate(x.wake_calls_per_s)
            ),
            None => "rates from the next refresh".to_owned(),
        };
        writeln!(
            out,
            "{t} {} {} depth {} ({:.2}% full) {rates}; producers {}; consumers {}",
            sn.config.name,
            sn.config.mode,
            sn.messages,
            monitor::percent(sn.used_bytes, sn.config.capacity),
            census_text(monitor::census(sn, Role::Producer), false),
            census_text(monitor::census(sn, Role::Consumer), true),
        )?;
        for sub in &sn.subscriptions {
            let out_rate = r.sub_rates.get(&sub.name).map_or(String::new(), |v| format!(", out {} msg/s", rate(*v)));
            writeln!(
                out,
                "{t}   {} subscription {}: lag {} (~{} msgs){}{out_rate}; members {}",
                sn.config.name,
                sub.name,
                format_size(sub.lag_bytes),
                sub.lag_messages,
                if sub.detached { ", detached" } else { "" },
                census_text(member_census(sub), true)
            )?;
        }
        for p in problems(sn) {
            writeln!(out, "{t}   {} {p}", sn.config.name)?;
        }
    }
    for (q, e) in &s.errors {
        writeln!(out, "{t} {q}: cannot read: {e}")?;
    }
    out.flush()?;
    Ok(())
}

/// The full-screen view.
fn tui(s: &mut Sampler, a: &TopArgs, interval: Duration) -> Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = tui_loop(&mut terminal, s, a, interval);
    ratatui::restore();
    result
}

fn tui_loop(terminal: &mut ratatui::DefaultTerminal, s: &mut Sampler, a: &TopArgs, interval: Duration) -> Result<()> {
    let (mut sort, mut reverse) = (a.sort, a.reverse);
    let mut view = View::default();
    let mut rows = s.sample();
    let mut next = Instant::now() + interval;
    loop {
        sort_rows(&mut rows, sort, reverse);
        terminal.draw(|f| draw(f, &rows, s, a, sort, reverse, &mut view))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    KeyCode::Char('s') => sort = sort.next(),
                    KeyCode::Char('r') => reverse = !reverse,
                    KeyCode::Tab | KeyCode::BackTab => view.subs_focused = !view.subs_focused,
                    code if view.subs_focused => {
                        view.subs.key(code, &sub_keys(&rows));
                    }
                    code => {
                        view.queues.key(code, &queue_keys(&rows));
                    }
                },
                // Drawn again at once, at the new size.
                Event::Resize(..) => {}
                _ => {}
            }
        }
        if Instant::now() >= next {
            rows = s.sample();
            next = Instant::now() + interval;
        }
    }
}

/// What the terminal view keeps from one frame to the next: which table has the focus, and
/// where each is scrolled.
#[derive(Default)]
struct View {
    /// The arrow keys move in the subscriptions table (else in the queues table).
    subs_focused: bool,
    queues: Scroll,
    subs: Scroll,
}

/// One table's scrolling.
#[derive(Default)]
struct Scroll {
    /// The selected row, by key (the queue's name; queue and subscription), so that it stays
    /// on the same row when the rows are sorted again or queues come and go. None until a
    /// key moves it.
    selected: Option<String>,
    /// The first row shown.
    offset: usize,
    /// Rows shown at the last draw: what PgUp and PgDn move by.
    page: usize,
}

impl Scroll {
    fn index(&self, keys: &[String]) -> Option<usize> {
        self.selected.as_ref().and_then(|s| keys.iter().position(|k| k == s))
    }

    /// Moves the selection by a navigation key (the first use selects a row on screen).
    /// Returns whether `code` was one.
    fn key(&mut self, code: KeyCode, keys: &[String]) -> bool {
        let Some(last) = keys.len().checked_sub(1) else { return false };
        let page = self.page.max(1);
        let at = self.index(keys);
        let to = match code {
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => last,
            KeyCode::Down | KeyCode::Char('j') => at.map_or(self.offset, |i| i + 1),
            KeyCode::Up | KeyCode::Char('k') => at.map_or(self.offset, |i| i.saturating_sub(1)),
            KeyCode::PageDown => at.unwrap_or(self.offset) + page,
            KeyCode::PageUp => at.unwrap_or(self.offset).saturating_sub(page),
            _ => return false,
        };
        self.selected = Some(keys[to.min(last)].clone());
        true
    }

    /// The table state for a frame of `len` rows of which `visible` fit: the selection
    /// (if its row still exists) kept on screen, and no empty space below the last row.
    fn state(&mut self, keys: &[String], visible: usize) -> TableState {
        let visible = visible.max(1);
        let selected = self.index(keys);
        let mut offset = self.offset.min(keys.len().saturating_sub(visible));
        if let Some(i) = selected {
            if i < offset {
                offset = i;
            } else if i >= offset + visible {
                offset = i + 1 - visible;
            }
        }
        (self.offset, self.page) = (offset, visible);
        let mut state = TableState::default().with_selected(selected);
        *state.offset_mut() = offset;
        state
    }

    /// The table's frame: " NAME a-b of N " when not every row fits, else " NAME "; drawn
    /// bold when the table has the focus.
    fn block(&self, name: &str, len: usize, focused: bool) -> Block<'static> {
        let title = if len > self.page {
            format!(" {name} {}-{} of {len} ", self.offset + 1, (self.offset + self.page).min(len))
        } else {
            format!(" {name} ")
        };
        let style = if focused { Style::default().add_modifier(Modifier::BOLD) } else { Style::default() };
        Block::bordered().title(title).border_style(style)
    }
}

/// The queues' rows' keys, in the order shown.
fn queue_keys(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| r.snap.config.name.clone()).collect()
}

/// The subscriptions' rows' keys, in the order shown.
fn sub_keys(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| r.snap.subscriptions.iter().map(move |s| format!("{}\n{}", r.snap.config.name, s.name)))
        .collect()
}

/// `name` in at most `width` columns: cut in the middle with "…" when longer, so that both
/// its start and its end stay visible (queues made in series often differ only at the end).
fn fit(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width {
        return name.to_owned();
    }
    let Some(keep) = width.checked_sub(1) else { return String::new() };
    let (head, tail) = (keep - keep / 2, keep / 2);
    let mut s: String = name.chars().take(head).collect();
    s.push('…');
    s.extend(name.chars().skip(n - tail));
    s
}

/// Two name columns sharing `room` columns: each as wide as it needs when both fit; else
/// the narrower keeps its width if that is at most half, and the other gets the rest.
fn share(room: usize, a: usize, b: usize) -> (usize, usize) {
    if a + b <= room {
        return (a, b);
    }
    let half = room / 2;
    if a <= half {
        (a, room - a)
    } else if b <= room - half {
        (room - b, b)
    } else {
        (half, room - half)
    }
}

/// Heights of the queues table, the subscriptions table and the problems box in `total`
/// lines: each as tall as it needs when all fit (the box takes what is left); otherwise the
/// box gets what it needs up to a fifth (at least 3 lines) and the two tables share the
/// rest, three to two, neither taller than it needs (nor shorter than one row when there is room).
fn heights(total: u16, queues: usize, subs: usize, problems: usize) -> [u16; 3] {
    let need = |rows: usize| u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3);
    let (q, s, p) = (need(queues), need(subs), need(problems).saturating_sub(1).max(3));
    if q.saturating_add(s).saturating_add(p) <= total {
        return [q, s, total - q - s];
    }
    let p = p.min((total / 5).max(3)).min(total);
    let rest = total - p;
    // At least one row each (a border, the header, a row) when there is room for it.
    let q = q.min((rest * 3 / 5).max(rest.saturating_sub(s)).max(rest.min(4)));
    let s = s.min(rest - q);
    [q, s, total - q - s]
}

#[allow(clippy::too_many_arguments)]
fn draw(f: &mut ratatui::Frame, rows: &[Row], s: &Sampler, a: &TopArgs, sort: SortKey, reverse: bool, view: &mut View) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let subs: usize = rows.iter().map(|r| r.snap.subscriptions.len()).sum();
    let problems: Vec<(String, String)> =
        rows.iter().flat_map(|r| problems(&r.snap).into_iter().map(|p| (r.snap.config.name.clone(), p))).collect();
    let [head, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(f.area());
    let [hq, hs, hp] = heights(rest.height, rows.len(), subs, problems.len() + s.errors.len());
    let [queues, subs_area, probs_area] =
        Layout::vertical([Constraint::Length(hq), Constraint::Length(hs), Constraint::Length(hp)]).areas(rest);
    f.render_widget(
        Paragraph::new(Line::from(format!(
            "shmq top  {}  {} queue(s)  refresh {:?}  stuck after {:?}  sort {}{}  [q] quit [s] sort [r] reverse \
             [↑↓] scroll [Tab] table",
            clock(),
            rows.len(),
            a.interval,
            a.stuck_after,
            sort.label(),
            if reverse { " (reversed)" } else { "" }
        ))),
        head,
    );
    // Selected rows are marked with this (2 columns, only while a row is selected).
    const MARK: &str = "> ";
    let (qkeys, skeys) = (queue_keys(rows), sub_keys(rows));
    let mut qstate = view.queues.state(&qkeys, usize::from(queues.height.saturating_sub(3)));
    let mut sstate = view.subs.state(&skeys, usize::from(subs_area.height.saturating_sub(3)));
    let mark_width = |st: &TableState| if st.selected().is_some() { MARK.len() as u16 } else { 0 };
    // The columns that fit the terminal's width, dropped least useful first: (header, width,
    // priority; 0 is always kept). LOG and UNSYNCED: a durable queue's log size on disk and
    // bytes not yet synced ("-" for a volatile queue). QUEUE is as wide as the longest name,
    // up to two fifths of the width.
    let mut columns: [(&str, u16, u8); 16] = [
        ("QUEUE", 12, 0),
        ("MODE", 4, 3),
        ("DEPTH", 7, 0),
        ("FULL", 6, 1),
        ("IN/s", 7, 0),
        ("IN B/s", 9, 2),
        ("OUT/s", 7, 0),
        ("OUT B/s", 9, 2),
        ("PROD", 5, 1),
        ("CONS", 8, 0),
        ("LAG", 9, 1),
        ("FULL/s", 6, 2),
        ("SLEEP/s", 7, 3),
        ("WAKE/s", 6, 3),
        ("LOG", 9, 2),
        ("UNSYNCED", 9, 2),
    ];
    let room = queues.width.saturating_sub(2 + mark_width(&qstate));
    let longest = rows.iter().map(|r| r.snap.config.name.chars().count()).max().unwrap_or(0);
    columns[0].1 = u16::try_from(longest).unwrap_or(u16::MAX).clamp(12, (room / 5 * 2).max(12));
    let name_width = usize::from(columns[0].1);
    let mut shown = [false; 16];
    for prio in 0..=3 {
        for i in (0..columns.len()).filter(|&i| columns[i].2 == prio) {
            shown[i] = true;
            let used: u16 = columns.iter().zip(shown).filter(|(_, s)| *s).map(|(c, _)| c.1 + 1).sum();
            if prio > 0 && used > room + 1 {
                shown[i] = false;
            }
        }
    }
    // Bytes per second in and out go together.
    if shown[5] != shown[7] {
        (shown[5], shown[7]) = (false, false);
    }
    let pick = |cells: Vec<Cell<'static>>| -> Vec<Cell<'static>> {
        cells.into_iter().zip(shown).filter(|(_, s)| *s).map(|(c, _)| c).collect()
    };
    let header = TRow::new(pick(columns.iter().map(|c| Cell::from(c.0)).collect())).style(bold);
    let body = rows.iter().map(|r| {
        let sn = &r.snap;
        let p = monitor::census(sn, Role::Producer);
        let c = monitor::census(sn, Role::Consumer);
        let x = r.rates.unwrap_or_default();
        let known = r.rates.is_some();
        let show = |v: f64| if known { rate(v) } else { "-".to_owned() };
        let show_b = |v: f64| if known { format_size(v.round() as u64) } else { "-".to_owned() };
        let row = TRow::new(pick(vec![
            Cell::from(fit(&sn.config.name, name_width)),
            Cell::from(sn.config.mode.to_string()),
            Cell::from(sn.messages.to_string()),
            Cell::from(format!("{:.1}%", monitor::percent(sn.used_bytes, sn.config.capacity))),
            Cell::from(show(x.sent_msgs_per_s)),
            Cell::from(show_b(x.sent_bytes_per_s)),
            Cell::from(show(x.received_msgs_per_s)),
            Cell::from(show_b(x.received_bytes_per_s)),
            Cell::from(format!("{}/{}d", p.alive + p.stuck, p.dead)),
            Cell::from(format!("{}/{}s/{}d", c.alive, c.stuck, c.dead)),
            Cell::from(format_size(monitor::max_lag(sn))),
            Cell::from(show(x.full_events_per_s)),
            Cell::from(show(x.wait_calls_per_s)),
            Cell::from(show(x.wake_calls_per_s)),
            Cell::from(monitor::log_bytes(sn).map_or("-".to_owned(), format_size)),
            Cell::from(monitor::durable_lag(sn).map_or("-".to_owned(), format_size)),
        ]));
        if c.stuck + c.dead + p.dead > 0 { row.style(Style::default().add_modifier(Modifier::REVERSED)) } else { row }
    });
    let widths: Vec<Constraint> =
        columns.iter().zip(shown).filter(|(_, s)| *s).map(|(c, _)| Constraint::Length(c.1)).collect();
    let block = view.queues.block("queues", rows.len(), !view.subs_focused);
    f.render_stateful_widget(
        Table::new(body, widths)
            .header(header)
            .block(block)
            .column_spacing(1)
            .highlight_symbol(MARK)
            .row_highlight_style(bold),
        queues,
        &mut qstate,
    );
    // LAG, ~MSGS, OUT/s, MEMBERS and STATE, and the spaces between the seven columns.
    const SUB_FIXED: [u16; 5] = [10, 9, 7, 9, 8];
    let fixed = SUB_FIXED.iter().sum::<u16>() + 6;
    let names_room = usize::from(subs_area.width.saturating_sub(2 + mark_width(&sstate) + fixed));
    let queue_longest = rows
        .iter()
        .filter(|r| !r.snap.subscriptions.is_empty())
        .map(|r| r.snap.config.name.chars().count())
        .max()
        .unwrap_or(0);
    let sub_longest =
        rows.iter().flat_map(|r| r.snap.subscriptions.iter().map(|s| s.name.chars().count())).max().unwrap_or(0);
    let (qw, sw) = share(names_room, queue_longest.max(5), sub_longest.max(12));
    let sub_rows = rows.iter().flat_map(|r| {
        r.snap.subscriptions.iter().map(move |sub| {
            let m = member_census(sub);
            TRow::new(vec![
                Cell::from(fit(&r.snap.config.name, qw)),
                Cell::from(fit(&sub.name, sw)),
                Cell::from(format_size(sub.lag_bytes)),
                Cell::from(sub.lag_messages.to_string()),
                Cell::from(r.sub_rates.get(&sub.name).map_or("-".to_owned(), |v| rate(*v))),
                Cell::from(format!("{}/{}s/{}d", m.alive, m.stuck, m.dead)),
                Cell::from(if sub.detached { "detached" } else { "ok" }),
            ])
        })
    });
    let to_u16 = |w: usize| u16::try_from(w).unwrap_or(u16::MAX);
    let mut sub_widths = vec![Constraint::Length(to_u16(qw)), Constraint::Length(to_u16(sw))];
    sub_widths.extend(SUB_FIXED.map(Constraint::Length));
    let block = view.subs.block("subscriptions", subs, view.subs_focused);
    f.render_stateful_widget(
        Table::new(sub_rows, sub_widths)
            .header(
                TRow::new(["QUEUE", "SUBSCRIPTION", "LAG", "~MSGS", "OUT/s", "MEMBERS", "STATE"].map(Cell::from))
                    .style(bold),
            )
            .block(block)
            .highlight_symbol(MARK)
            .row_highlight_style(bold),
        subs_area,
        &mut sstate,
    );
    let mut lines: Vec<Line> = problems.iter().map(|(q, p)| Line::from(format!("{q}: {p}"))).collect();
    lines.extend(s.errors.iter().map(|(q, e)| Line::from(format!("{q}: cannot read: {e}"))));
    if lines.is_empty() {
        lines.push(Line::from("no stuck or dead participants"));
    }
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" stuck and dead ")), probs_area);
}
