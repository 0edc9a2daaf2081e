//! Gives the shared library its SONAME, `libshmq.so.<SHMQ_ABI_VERSION>` (cargo sets none).
//! The major number is read from `src/lib.rs`, so the constant and the SONAME cannot drift.

use std::fs;

fn main() {
    println!("cargo:rerun-if-changed=src/lib.rs");
    let src = fs::read_to_string("src/lib.rs").expect("read src/lib.rs");
    let abi: u32 = src
        .lines()
        .find_map(|l| l.strip_prefix("pub const SHMQ_ABI_VERSION: c_int = "))
        .and_then(|rest| rest.trim_end_matches(';').trim().parse().ok())
        .expect("src/lib.rs defines `pub const SHMQ_ABI_VERSION: c_int = N;`");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmq.so.{abi}");
    }
}
