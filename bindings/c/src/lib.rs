//! C ABI (placeholder until the C ABI issue lands).
