//! The checked-in `include/shmq.h` is exactly what cbindgen makes from `src/lib.rs` now.
//!
//! After changing the ABI, rewrite the header and review the diff:
//! `SHMQ_BLESS=1 cargo test -p shmq-c --test header`.

use std::path::Path;

fn generate() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    finish(&String::from_utf8(out).expect("cbindgen writes UTF-8")).into_bytes()
}

/// What cbindgen cannot be told: C89-clean comments and constants, and the trailer (the
/// `shmq_options_init` macro, which must follow the function it shadows) inside the
/// include guard rather than after it.
fn finish(raw: &str) -> String {
    const GUARD_END: &str = "#endif  /* SHMQ_H */\n";
    let (body, trailer) = raw.split_once(GUARD_END).expect("cbindgen writes the include guard");
    let mut out = String::new();
    for line in body.lines() {
        let line = match line {
            "#endif // __cplusplus" | "#endif  // __cplusplus" => "#endif  /* __cplusplus */".to_owned(),
            "}  // extern \"C\"" => "}  /* extern \"C\" */".to_owned(),
            _ => define(line).unwrap_or_else(|| line.to_owned()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    format!("{out}{}\n\n{GUARD_END}", trailer.trim_matches('\n'))
}

/// `#define SHMQ_X -1` as `#define SHMQ_X (-1)`; `#define SHMQ_X_PERMISSIONS 384` in octal.
fn define(line: &str) -> Option<String> {
    let rest = line.strip_prefix("#define ")?;
    let (name, value) = rest.split_once(' ')?;
    let n: i64 = value.parse().ok()?;
    if n < 0 {
        Some(format!("#define {name} ({n})"))
    } else if name.ends_with("_PERMISSIONS") {
        Some(format!("#define {name} 0{n:o}"))
    } else {
        None
    }
}

#[test]
fn checked_in_header_matches_cbindgen_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/shmq.h");
    let fresh = generate();
    if std::env::var_os("SHMQ_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &fresh).expect("write include/shmq.h");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    if checked_in != fresh {
        let old = String::from_utf8_lossy(&checked_in);
        let new = String::from_utf8_lossy(&fresh);
        let first = old
            .lines()
            .zip(new.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(new.lines().count()));
        panic!(
            "{} is stale: it differs from cbindgen's output from line {} on\n  checked in: {:?}\n  generated:  {:?}\n\
             Regenerate it with `SHMQ_BLESS=1 cargo test -p shmq-c --test header` and commit it.",
            path.display(),
            first + 1,
            old.lines().nth(first).unwrap_or("<end of file>"),
            new.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn header_is_ascii_and_free_of_line_comments() {
    let header = String::from_utf8(generate()).expect("utf-8 header");
    assert!(header.is_ascii(), "non-ASCII in the header: {:?}", header.chars().find(|c| !c.is_ascii()));
    for (i, line) in header.lines().enumerate() {
        // `//` inside a block comment is harmless; outside one it is not C89.
        let code = line.trim_start();
        let in_comment = code.starts_with("/*") || code.starts_with('*');
        assert!(in_comment || !line.contains("//"), "line {}: `//` outside a comment: {line}", i + 1);
    }
    let guard_end = header.rfind("#endif  /* SHMQ_H */").expect("include guard");
    assert!(header.find("#define shmq_options_init(o)").expect("the macro") < guard_end);
    assert!(header.find("#define shmq_subscription_options_init(o)").expect("the macro") < guard_end);
}

#[test]
fn header_declares_the_design_contract() {
    let header = String::from_utf8(generate()).expect("utf-8 header");
    for typedef in [
        "typedef struct shmq_options {",
        "typedef struct shmq_producer shmq_producer;",
        "typedef struct shmq_consumer shmq_consumer;",
        "typedef struct shmq_subscription_options {",
        "typedef struct shmq_msg_info {",
    ] {
        assert!(header.contains(typedef), "the header lacks `{typedef}`");
    }
    for name in [
        "void shmq_options_init(shmq_options *o)",
        "int shmq_options_init_sized(shmq_options *o, size_t size)",
        "#define shmq_options_init(o) shmq_options_init_sized((o), sizeof *(o))",
        "const char *shmq_last_error(void)",
        "int shmq_producer_interrupt(shmq_producer *p)",
        "int shmq_consumer_interrupt(shmq_consumer *c)",
        "#define SHMQ_ERR_INTERRUPTED (-16)",
        "#define SHMQ_ERR_FULL (-1)",
        "#define SHMQ_DEFAULT_PERMISSIONS 0600",
        "int shmq_create(const char *name, const shmq_options *o)",
        "int shmq_remove(const char *name)",
        "int shmq_producer_open(const char *name, shmq_producer **out)",
        "int shmq_consumer_open(const char *name, shmq_consumer **out)",
        "int shmq_producer_set_wait(shmq_producer *p, int wait)",
        "int shmq_consumer_set_wait(shmq_consumer *c, int wait)",
        "void shmq_producer_close(shmq_producer *p)",
        "void shmq_consumer_close(shmq_consumer *c)",
        "int shmq_send(shmq_producer *p, const void *data, size_t len, int64_t timeout_ns)",
        "int shmq_reserve(shmq_producer *p, size_t len, void **buf, int64_t timeout_ns)",
        "int shmq_commit(shmq_producer *p)",
        "int shmq_abort(shmq_producer *p)",
        "int shmq_recv(shmq_consumer *c, void *buf, size_t cap, size_t *len, int64_t timeout_ns)",
        "int shmq_peek(shmq_consumer *c, const void **data, size_t *len, int64_t timeout_ns)",
        "int shmq_release(shmq_consumer *c)",
        "const char *shmq_strerror(int err)",
        "#define SHMQ_ABI_VERSION 1",
        "#define SHMQ_ERR_LAPPED (-17)",
        "#define SHMQ_START_NOW 0",
        "#define SHMQ_ACK_AUTO 0",
        "#define SHMQ_ACK_EXPLICIT 1",
        "int shmq_subscription_options_init_sized(shmq_subscription_options *o, size_t size)",
        "#define shmq_subscription_options_init(o) shmq_subscription_options_init_sized((o), sizeof *(o))",
        "int shmq_subscription_create(const char *queue, const char *name, const shmq_subscription_options *o)",
        "int shmq_subscription_remove(const char *queue, const char *name)",
        "int shmq_consumer_subscribe(const char *queue, const char *name, shmq_consumer **out)",
        "int shmq_recv_info(shmq_consumer *c, void *buf, size_t cap, size_t *len, shmq_msg_info *info, \
         int64_t timeout_ns)",
    ] {
        // cbindgen writes `struct shmq_options *`: the same type as `shmq_options *`.
        let flat = header.split_whitespace().collect::<Vec<_>>().join(" ").replace("struct shmq_", "shmq_");
        assert!(flat.contains(name), "the header lacks `{name}`");
    }
}
