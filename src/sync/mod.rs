//! Synchronisation: the atomics facade (std, or loom under `cfg(loom)`), the futex
//! wait/wake protocol (docs/ARCHITECTURE.md, "Waiting"), and spin backoff.
//!
//! Nothing here knows about rings or segments: the wait protocol takes the condition it
//! waits for as a closure, and the sleeping itself goes through the [`Futex`] trait, so that
//! loom can model it without system calls.

pub mod atomic;
pub mod futex;
#[cfg(not(loom))]
pub mod membarrier;
pub mod wait;

pub use futex::Futex;
