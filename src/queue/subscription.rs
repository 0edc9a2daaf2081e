//! [`Subscription`]: named readers of a queue, created with fixed [`SubscriptionOptions`];
//! what [`Subscription::list`] and [`Queue::inspect`](super::Queue::inspect) report of them
//! ([`SubscriptionInfo`], [`MemberInfo`]).
//!
//! Every subscription sees every message sent after it was created (fan-out); the processes
//! that join one with [`Consumer::subscribe`](super::Consumer::subscribe) share its messages,
//! each message going to one of them. The default subscription, [`Subscription::DEFAULT`],
//! exists from the queue's creation and is read by [`Consumer::open`](super::Consumer::open),
//! one consumer at a time.

use super::stats::CounterValues;
use crate::error::{Error, Result};

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum From {
    /// With the next message sent: a subscription sees what is sent after its creation.
    #[default]
    Now,
}

/// The options of a subscription, fixed when it is created: every member of a subscription
/// agrees on them.
///
/// ```
/// use shmq::{From, SubscriptionOptions};
/// let o = SubscriptionOptions::new().start(From::Now).lag_limit(Some(64 << 10));
/// assert_eq!(o.get_lag_limit(), Some(65536));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub(super) start: From,
    pub(super) lag_limit: Option<u64>,
}

impl SubscriptionOptions {
    /// The defaults: start now, no lag limit (a slow subscription holds producers back).
    pub fn new() -> SubscriptionOptions {
        SubscriptionOptions::default()
    }

    /// Where the subscription starts (only [`From::Now`] on a volatile queue).
    pub fn start(mut self, start: From) -> Self {
        self.start = start;
        self
    }

    /// `Some(bytes)`: the subscription never holds producers back by more than `bytes`
    /// (at most the queue's capacity; larger values count as the capacity). When a producer
    /// needs space that the subscription still holds and it is that far behind, the producer
    /// detaches it and goes on; the subscription's next receive returns
    /// [`Error::Lapped`] with the number of bytes it missed and continues with the newest
    /// messages. Messages a member has claimed (and borrowed ones) are never taken from
    /// under it. `None` (the default): producers wait for it, nothing is ever missed.
    pub fn lag_limit(mut self, bytes: Option<u64>) -> Self {
        self.lag_limit = bytes;
        self
    }

    /// The start option.
    pub fn get_start(&self) -> From {
        self.start
    }

    /// The lag limit.
    pub fn get_lag_limit(&self) -> Option<u64> {
        self.lag_limit
    }
}

/// Operations on a queue's subscriptions by name. Names follow the queue-name rule and are
/// at most [`MAX_SUBSCRIPTION_NAME`](Subscription::MAX_NAME_LEN) bytes.
#[derive(Debug)]
pub struct Subscription {
    _private: (),
}

/// A member of a subscription (a process that joined it with
/// [`Consumer::subscribe`](super::Consumer::subscribe), or the default subscription's
/// consumer), as [`Subscription::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Pid at joining (information: pids are reused).
    pub pid: u32,
    /// Whether the kernel says it lives (a stopped process is alive).
    pub alive: bool,
    /// The span of positions `[start, end)` it has claimed and not released yet, if any.
    pub claimed: Option<(u64, u64)>,
    /// Messages and bytes it received since joining, and its wake and wait calls.
    pub counters: CounterValues,
    /// Last heartbeat, nanoseconds since the Unix epoch.
    pub heartbeat_unix_ns: u64,
}

/// A snapshot of one subscription. Values may change at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its name ([`Subscription::DEFAULT`] for the default subscription).
    pub name: String,
    /// Its lag limit in bytes (`None`: it holds producers back).
    pub lag_limit: Option<u64>,
    /// The position (message id) of the next message it will hand out.
    pub position: u64,
    /// Bytes between the oldest position it still holds (claimed by a member, or not yet
    /// handed out) and the producers' position: records, headers and padding.
    pub lag_bytes: u64,
    /// About how many messages that is (estimated from the queue's average record size).
    pub lag_messages: u64,
    /// Whether it is detached now (lapped, not yet rejoined by a member).
    pub detached: bool,
    /// How often it was detached for falling behind its lag limit.
    pub lapped: u64,
    /// Bytes it missed over all those times.
    pub missed_bytes: u64,
    /// Messages handed out again because the member holding them died.
    pub redelivered: u64,
    /// Totals over its members, past and present.
    pub received: CounterValues,
    /// Its members now.
    pub members: Vec<MemberInfo>,
}

impl Subscription {
    /// The name of the default subscription, which every queue has from its creation and
    /// [`Consumer::open`](super::Consumer::open) reads.
    pub const DEFAULT: &'static str = "default";
    /// Longest subscription name, in bytes.
    pub const MAX_NAME_LEN: usize = 48;
    /// Most subscriptions a queue can have at once, the default one included.
    pub const MAX: usize = crate::layout::SUBSCRIPTIONS;

    /// Creates subscription `name` on queue `queue`, starting with the next message sent.
    /// Creating one that exists with the same options does nothing; with other options it is
    /// `InvalidArgument`. `Busy` when the queue has [`MAX`](Self::MAX) subscriptions.
    pub fn create(queue: &str, name: &str, options: SubscriptionOptions) -> Result<()> {
        let _ = (queue, name, options);
        Err(Error::InvalidArgument("subscriptions: not yet".into()))
    }

    /// The queue's subscriptions, the default one first if it exists.
    pub fn list(queue: &str) -> Result<Vec<SubscriptionInfo>> {
        let _ = queue;
        Err(Error::InvalidArgument("subscriptions: not yet".into()))
    }

    /// Removes subscription `name` (the default one too): producers stop waiting for it,
    /// and its members' calls return `Closed`. `NotFound` if there is none of that name.
    pub fn remove(queue: &str, name: &str) -> Result<()> {
        let _ = (queue, name);
        Err(Error::InvalidArgument("subscriptions: not yet".into()))
    }
}

/// Checks a subscription name: the queue-name rule, at most
/// [`Subscription::MAX_NAME_LEN`] bytes.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    crate::segment::validate_name(name)?;
    if name.len() > Subscription::MAX_NAME_LEN {
        return Err(Error::InvalidName(format!(
            "subscription name {} is longer than {} bytes",
            crate::segment::shown(name),
            Subscription::MAX_NAME_LEN
        )));
    }
    Ok(())
}

/// Writes the default subscription into a new header (entry 0: active, named
/// [`Subscription::DEFAULT`], no lag limit). Called by the creator before the header is
/// marked ready.
pub(crate) fn init_default_subscription(h: &crate::layout::Header) {
    use crate::layout;
    use crate::sync::atomic::Ordering;
    let _ = h;
    let _ = (layout::SUB_ACTIVE, Ordering::Relaxed);
}
