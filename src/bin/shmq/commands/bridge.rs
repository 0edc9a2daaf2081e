//! `shmq bridge ARGS...`: replaces this process with the `shmq-bridge` program (the NATS
//! JetStream bridge, a crate of its own so that the library and this tool need no async
//! runtime), found next to this executable or else on the PATH.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

const PROGRAM: &str = "shmq-bridge";

/// Execs `shmq-bridge` with `args`; returns only if that fails.
pub fn exec(args: &[String]) -> anyhow::Result<()> {
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(PROGRAM)));
    let program = match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from(PROGRAM), // looked up on the PATH by exec
    };
    let err = std::process::Command::new(&program).args(args).exec();
    Err(err).with_context(|| {
        format!(
            "cannot run {} (build it with `cargo build --release -p shmq-bridge` and put it next to shmq or on \
             the PATH)",
            program.display()
        )
    })
}
