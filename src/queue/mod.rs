//! The user API: [`Queue`] (create, remove, list, inspect), [`Producer`] and [`Consumer`]
//! handles, zero-copy [`Grant`]s and borrowed [`Message`]s.
//!
//! * `options`: [`Options`] and the defaults.
//! * `admin`: [`Queue`], operations by name.
//! * `stats`: [`Snapshot`] and what it holds; the counters each handle keeps.
//! * `producer`: [`Producer`], [`Grant`], [`RawGrant`], batches.
//! * `consumer`: [`Consumer`], [`Message`], batches.
//! * `attach`: what both handles share: open/register/attach/deregister, the wait loop.
//! * `subscription`: [`Subscription`], its options and what `list` reports.
//! * `watch`: [`Watch`], which flags stuck consumers by looking at a queue over time.
//! * `interrupt`: [`Interrupter`], which wakes a blocked call from a thread or a signal.
//!
//! A handle is a segment (its own mapping and file description), a participant slot, a
//! ring state and a wait policy. Handles are `Send` but not `Sync` (enforced by a marker in
//! `attach::Handle`): one thread at a time.

mod admin;
mod attach;
mod backlog;
mod consumer;
mod dlq;
mod gate;
mod interrupt;
mod journal;
mod journaler;
mod member;
mod options;
mod producer;
mod reader;
mod restore;
mod stats;
mod subscription;
mod watch;

pub(crate) use consumer::acks;

/// The longest a restored queue's creator is given to make its checkpoint's subscriptions
/// again before retention goes on without them (a creator killed part-way leaves the
/// queue's retention paused this long; making them takes milliseconds).
pub(crate) const RESTORE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub use crate::segment::{Config, DurableConfig, Mode};
pub use admin::Queue;
pub use consumer::{Consumer, Message};
pub use dlq::{DeadLetter, dlq_name};
pub use interrupt::Interrupter;
pub use journaler::Journaler;
pub use options::{
    DEFAULT_CAPACITY, DEFAULT_MAX_LOG_BYTES, DEFAULT_MAX_MESSAGE, DEFAULT_PERMISSIONS, Fsync, Options, Retain,
};
pub use producer::{Grant, Producer, RawGrant};
pub use reader::{Reader, Replayed};
pub use stats::{CounterValues, DurableStats, Participant, Role, Snapshot};
pub(crate) use subscription::init_default_subscription;
pub use subscription::{Ack, From, MemberInfo, Subscription, SubscriptionInfo, SubscriptionOptions};
pub use watch::{Progress, Watch};
