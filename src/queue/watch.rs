//! [`Watch`]: tells consumers and subscription members that hold messages without taking any
//! ([`Progress::Stuck`]) by comparing snapshots of a queue over time.
//!
//! Why over time, in the reader, rather than a timestamp the handles write: a receive would
//! have to read the clock for every message (a handle refreshes its heartbeat only every 4096
//! messages and when it starts to wait, so the heartbeat of a consumer taking ten messages a
//! second is minutes old), and one snapshot cannot tell a consumer that took its last message
//! a minute ago from one that took it a microsecond ago. The watcher instead remembers, per
//! participant, the last look at which it had taken messages or held none; a participant
//! that has held messages since then, without its count or its claim moving, has been stalled
//! for the time between. The costs: the first look at a participant judges nothing
//! ([`Progress::Unknown`]), and a stall is seen to within the time between looks.
//!
//! Dead participants need no watcher: the kernel drops a participant's slot lock when its
//! process ends, so [`Participant::alive`](super::Participant::alive) is false on the first
//! look after the death. A stopped process (`SIGSTOP`, a debugger) holds its lock: it is
//! alive, and stuck if it holds messages long enough.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::admin::Queue;
use super::stats::{Role, Snapshot};
use crate::error::{Error, Result};

/// Whether a consumer or subscription member takes the messages it holds, as a [`Watch`]
/// judged it. Producers are not judged ([`Progress::Unknown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Progress {
    /// Not judged: one snapshot ([`Queue::inspect`]) cannot tell, a watcher's first look at
    /// a participant cannot either, and producers are never judged.
    #[default]
    Unknown,
    /// It holds no messages (nothing waits for it, or its siblings take them), or it took
    /// some since the previous look.
    Moving,
    /// It has held messages without taking any for this long (as seen from the watcher's
    /// looks), less than the watcher's threshold.
    Stalled(Duration),
    /// It has held messages without taking any for this long, at least the watcher's
    /// threshold.
    Stuck(Duration),
}

impl Progress {
    /// Whether it is [`Progress::Stuck`].
    pub fn is_stuck(&self) -> bool {
        matches!(self, Progress::Stuck(_))
    }

    /// How long it has held messages without taking any (zero unless stalled or stuck).
    pub fn stalled_for(&self) -> Duration {
        match *self {
            Progress::Stalled(d) | Progress::Stuck(d) => d,
            _ => Duration::ZERO,
        }
    }
}

/// Watches queues over time to flag stuck consumers and subscription members: one that holds
/// messages without taking any for at least `stuck_after` is [`Progress::Stuck`].
///
/// A consumer of the default subscription holds messages when the subscription has some
/// waiting. A member of a named subscription holds messages when it has claimed some, or
/// when the subscription has messages waiting that no member has claimed and none of its
/// members claimed or took any since the previous look (a member beside busy siblings holds
/// nothing). It makes progress when its received count or its
/// claim changes. Look at a queue at least a few times per `stuck_after`: each look is
/// [`Queue::inspect`] (read-only; it never registers with the queue).
///
/// ```
/// use std::time::Duration;
/// use shmq::{Options, Progress, Queue, Watch};
/// # let name = format!("doc-watch-{}", std::process::id());
/// Queue::create(&name, Options::new())?;
/// let mut watch = Watch::new(Duration::from_secs(5));
/// let s = watch.inspect(&name)?;
/// assert!(s.participants.iter().all(|p| p.progress == Progress::Unknown)); // no one here yet
/// # Queue::remove(&name)?;
/// # Ok::<(), shmq::Error>(())
/// ```
#[derive(Debug)]
pub struct Watch {
    stuck_after: Duration,
    queues: HashMap<String, Track>,
}

/// What a watcher remembers of one queue.
#[derive(Debug)]
struct Track {
    /// The queue's creation time: a queue made anew under the same name starts afresh.
    created_unix_ns: u64,
    /// Position and received count of each subscription at the last look, by name.
    positions: HashMap<String, (u64, u64)>,
    /// Each consumer and member at the last look.
    seen: HashMap<Key, Seen>,
}

/// A participant: its slot and the process holding it (a slot reused by another process is
/// another participant).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Key {
    slot: usize,
    pid: u32,
    start_time: u64,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    received: u64,
    claimed: Option<(u64, u64)>,
    /// The last look at which it had taken messages or held none.
    since: Instant,
}

impl Watch {
    /// A watcher that flags participants stuck after `stuck_after` without progress.
    pub fn new(stuck_after: Duration) -> Watch {
        Watch { stuck_after, queues: HashMap::new() }
    }

    /// Its threshold.
    pub fn stuck_after(&self) -> Duration {
        self.stuck_after
    }

    /// [`Queue::inspect`], then [`observe`](Self::observe). A queue that is gone is
    /// forgotten (and `NotFound` returned).
    pub fn inspect(&mut self, name: &str) -> Result<Snapshot> {
        match Queue::inspect(name) {
            Ok(mut s) => {
                self.observe(&mut s);
                Ok(s)
            }
            Err(e @ Error::NotFound(_)) => {
                self.forget(name);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Judges the consumers and members of `snapshot` (taken just now) against the previous
    /// look at the same queue, filling in their `progress`.
    pub fn observe(&mut self, snapshot: &mut Snapshot) {
        self.observe_at(snapshot, Instant::now());
    }

    /// Forgets queue `name` (it was removed).
    pub fn forget(&mut self, name: &str) {
        self.queues.remove(name);
    }

    /// Forgets every queue for which `keep` returns false (those no longer listed).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.queues.retain(|name, _| keep(name));
    }

    pub(crate) fn observe_at(&mut self, s: &mut Snapshot, now: Instant) {
        let created = s.config.created_unix_ns;
        let track = self.queues.entry(s.config.name.clone()).or_insert_with(|| Track {
            created_unix_ns: created,
            positions: HashMap::new(),
            seen: HashMap::new(),
        });
        if track.created_unix_ns != created {
            *track = Track { created_unix_ns: created, positions: HashMap::new(), seen: HashMap::new() };
        }
        let stuck_after = self.stuck_after;
        let tail = s.tail;
        let mut seen = HashMap::new();
        // What each consumer-like participant is, by slot: (progress, key).
        let mut judged: HashMap<usize, Progress> = HashMap::new();
        let starts: HashMap<usize, (u32, u64)> =
            s.participants.iter().map(|p| (p.slot, (p.pid, p.start_time))).collect();
        let mut judge = |slot: usize, received: u64, claimed: Option<(u64, u64)>, waiting: Option<bool>| {
            let (pid, start_time) = starts.get(&slot).copied().unwrap_or((0, 0));
            let key = Key { slot, pid, start_time };
            let (progress, since) = match track.seen.get(&key) {
                None => (Progress::Unknown, now),
                Some(prev) => {
                    let moved = prev.received != received || prev.claimed != claimed;
                    // `waiting`: messages wait for this participant's subscription and none
                    // of its readers took any since the last look (None: not known).
                    let holds = claimed.is_some() || waiting == Some(true);
                    if moved || !holds {
                        (Progress::Moving, now)
                    } else {
                        let d = now.saturating_duration_since(prev.since);
                        (if d >= stuck_after { Progress::Stuck(d) } else { Progress::Stalled(d) }, prev.since)
                    }
                }
            };
            seen.insert(key, Seen { received, claimed, since });
            judged.insert(slot, progress);
            progress
        };
        for sub in &mut s.subscriptions {
            // Whether the subscription moved since the last look: a member claimed messages
            // (its position) or took some (its received count; members claim up to 16 at a
            // time and take them one by one).
            let now_at = (sub.position, sub.received.messages);
            let still = track.positions.get(&sub.name).map(|&at| at == now_at);
            // Messages wait unclaimed (between its position and the producers') and none of
            // its readers claimed or took any since the last look. Messages a member has
            // claimed are that member's: they do not make its idle siblings hold anything.
            let unclaimed = sub.position < tail && !sub.detached;
            let waiting = still.map(|still| still && unclaimed);
            for m in &mut sub.members {
                m.progress = judge(m.slot, m.counters.messages, m.claimed, waiting);
            }
        }
        track.positions =
            s.subscriptions.iter().map(|sub| (sub.name.clone(), (sub.position, sub.received.messages))).collect();
        track.seen = seen;
        for p in &mut s.participants {
            p.progress = match p.role {
                Role::Consumer => judged.get(&p.slot).copied().unwrap_or_default(),
                Role::Producer => Progress::Unknown,
            };
        }
    }
}
