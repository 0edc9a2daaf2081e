//! Parsers for command-line values: sizes (`64`, `4KiB`, `1MiB`), durations (`5ms`, `2s`),
//! queue names and octal permissions. Each returns a message that clap prints with the
//! usage, and exits with status 2.

use std::time::Duration;

/// A byte count: a plain number of bytes, or a number with a binary unit (`B`, `KiB`,
/// `MiB`, `GiB`, `TiB`; `K`, `M`, `G`, `T` are the same). Decimal units (`KB`) are refused
/// so that nobody gets 1000 when they meant 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("invalid size {s:?}: expected a number of bytes such as 64, 4KiB or 1MiB"));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}: number too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        "kb" | "mb" | "gb" | "tb" => {
            return Err(format!("invalid size {s:?}: use binary units (KiB, MiB, GiB), not {unit}"));
        }
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Smallest and largest capacity the library accepts.
pub const MIN_CAPACITY: u64 = 1 << 10;
/// See [`MIN_CAPACITY`].
pub const MAX_CAPACITY: u64 = 1 << 40;

/// A queue capacity: a size that is a power of two from 1 KiB to 1 TiB. Checked here, while
/// clap still knows the subcommand and the text as typed, so the error shows both.
pub fn parse_capacity(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !n.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&n) {
        return Err("must be a power of two from 1KiB to 1TiB (it is not rounded)".into());
    }
    Ok(n)
}

/// A size as the user typed it and as bytes, for checks made after parsing (which need
/// another option's value) to quote the user's own words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedSize {
    /// The value in bytes.
    pub bytes: u64,
    /// The text as typed.
    pub typed: String,
}

/// A largest-message size: at least 1 byte and at most `u32::MAX`. Whether it is at most
/// half the capacity is checked after parsing.
pub fn parse_max_message(s: &str) -> Result<TypedSize, String> {
    let n = parse_size(s)?;
    if n == 0 {
        return Err("must be at least 1 byte (a queue with 0 could carry only empty messages)".into());
    }
    if n > u64::from(u32::MAX) {
        return Err("must be below 4GiB".into());
    }
    Ok(TypedSize { bytes: n, typed: s.to_owned() })
}

/// A size that must fit in `usize` (message sizes).
pub fn parse_usize_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    usize::try_from(n).map_err(|_| format!("invalid size {s:?}: too large"))
}

/// A duration: a number (decimals allowed) and a unit, `ns`, `us` (or `µs`), `ms`, `s`,
/// `m`, `h`. `0` needs no unit; any other number does.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() || num.chars().filter(|&c| c == '.').count() > 1 || num == "." {
        return Err(format!("invalid duration {s:?}: expected a number and a unit, such as 5ms or 2s"));
    }
    let scale_ns: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "" => return Err(format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h), e.g. {t}ms")),
        _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h)")),
    };
    let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ns = v * scale_ns;
    if !ns.is_finite() || ns > 1e18 {
        return Err(format!("invalid duration {s:?}: too long"));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// A queue name, checked by the library's rules (1–200 bytes of `[A-Za-z0-9._-]`, not
/// starting with `.`) before anything touches the system.
pub fn parse_name(s: &str) -> Result<String, String> {
    shmq::validate_name(s).map(|()| s.to_owned()).map_err(|e| e.to_string())
}

/// A subscription name: 1-48 bytes ([`shmq::Subscription::MAX_NAME_LEN`]) of
/// `[A-Za-z0-9._-]`, not starting with `.` (the queue-name rule, shorter). The library checks
/// it again; this check only makes a bad name a usage error.
pub fn parse_subscription_name(s: &str) -> Result<String, String> {
    let max = shmq::Subscription::MAX_NAME_LEN;
    let broken = if s.is_empty() {
        "is empty".to_owned()
    } else if s.len() > max {
        format!("is {} bytes long", s.len())
    } else if s.starts_with('.') {
        "starts with '.'".to_owned()
    } else if let Some((i, c)) =
        s.char_indices().find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!("has {c:?} at byte {i}")
    } else {
        return Ok(s.to_owned());
    };
    Err(format!("subscription name {broken}: use 1-{max} bytes of [A-Za-z0-9._-], not starting with '.'"))
}

/// A lag limit: a size of at least 1 byte (no option at all means no limit). Values above the
/// queue's capacity count as the capacity.
pub fn parse_lag_limit(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n == 0 {
        return Err("must be at least 1 byte (leave --lag-limit out for no limit)".into());
    }
    Ok(n)
}

/// A sync policy for `--fsync`: `never`, `always` or `interval:DUR` (a duration above 0, as
/// [`parse_duration`] reads it).
pub fn parse_fsync(s: &str) -> Result<shmq::Fsync, String> {
    let t = s.trim();
    match t {
        "never" => return Ok(shmq::Fsync::Never),
        "always" => return Ok(shmq::Fsync::Always),
        _ => {}
    }
    let Some(d) = t.strip_prefix("interval:") else {
        return Err(format!("invalid sync policy {s:?}: use never, always or interval:DUR (e.g. interval:10ms)"));
    };
    let d = parse_duration(d)?;
    if d.is_zero() {
        return Err("the interval must be more than 0 (use always to sync on every send)".into());
    }
    Ok(shmq::Fsync::Interval(d))
}

/// A sync policy as `--fsync` takes it: `never`, `always`, `interval:5ms`.
pub fn format_fsync(f: shmq::Fsync) -> String {
    match f {
        shmq::Fsync::Never => "never".into(),
        shmq::Fsync::Always => "always".into(),
        shmq::Fsync::Interval(d) => format!("interval:{d:?}"),
    }
}

/// What a durable queue keeps for `--retain`: `acked` (nothing once released) or a size of
/// at least 1 byte.
pub fn parse_retain(s: &str) -> Result<shmq::Retain, String> {
    if s.trim() == "acked" {
        return Ok(shmq::Retain::Acked);
    }
    match parse_size(s) {
        Ok(0) => Err("must be at least 1 byte (use acked to keep nothing once released)".into()),
        Ok(n) => Ok(shmq::Retain::Bytes(n)),
        Err(e) => Err(format!("{e}; or acked")),
    }
}

/// A log size limit: a size of at least 1 byte.
pub fn parse_max_log(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// Permission bits in octal (`600`, `0660`, `0o660`); must include owner read and write.
pub fn parse_permissions(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let bits = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("invalid permissions {s:?}: expected octal bits such as 600 or 660"))?;
    if bits > 0o777 {
        return Err(format!("invalid permissions {s:?}: only the bits 0777 are allowed"));
    }
    if bits & 0o600 != 0o600 {
        return Err(format!("invalid permissions {s:?}: the owner needs read and write (0600)"));
    }
    Ok(bits)
}

/// A human-readable byte count: `64 B`, `4 KiB`, `1.5 MiB`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v.fract() == 0.0 { format!("{v} {}", UNITS[i]) } else { format!("{v:.1} {}", UNITS[i]) }
}

/// A human-readable age or span, at most two units: `850ms`, `12.3s`, `5m03s`, `2h05m`,
/// `3d04h`.
pub fn format_age(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s / 3600 % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_plain_numbers_and_binary_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("8k"), Ok(8192));
        assert!(parse_size("4KB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000TiB").is_err());
    }

    #[test]
    fn capacities_are_powers_of_two_from_1kib_to_1tib() {
        assert_eq!(parse_capacity("1KiB"), Ok(1024));
        assert_eq!(parse_capacity("1TiB"), Ok(1 << 40));
        assert!(parse_capacity("0").is_err());
        assert!(parse_capacity("512").is_err());
        assert!(parse_capacity("3KiB").is_err());
        assert!(parse_capacity("2TiB").is_err());
    }

    #[test]
    fn max_messages_are_at_least_one_byte() {
        assert_eq!(parse_max_message("1KiB").map(|t| t.bytes), Ok(1024));
        assert_eq!(parse_max_message("1").map(|t| t.typed), Ok("1".to_owned()));
        assert!(parse_max_message("0").unwrap_err().contains("at least 1 byte"));
        assert!(parse_max_message("4GiB").is_err());
    }

    #[test]
    fn durations_need_a_unit_except_zero() {
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn names_follow_the_library_rules() {
        assert!(parse_name("orders-1.a_b").is_ok());
        assert!(parse_name("").is_err());
        assert!(parse_name(".hidden").is_err());
        assert!(parse_name("a/b").is_err());
        assert!(parse_name(&"x".repeat(shmq::MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn subscription_names_follow_the_queue_rule_and_are_at_most_48_bytes() {
        assert_eq!(parse_subscription_name("billing-2.a_b"), Ok("billing-2.a_b".to_owned()));
        assert!(parse_subscription_name(&"s".repeat(48)).is_ok());
        assert!(parse_subscription_name(&"s".repeat(49)).unwrap_err().contains("1-48 bytes"));
        assert!(parse_subscription_name("a/b").unwrap_err().contains("subscription name"));
        assert!(parse_subscription_name(".x").is_err());
        assert!(parse_subscription_name("").is_err());
    }

    #[test]
    fn lag_limits_are_sizes_of_at_least_one_byte() {
        assert_eq!(parse_lag_limit("4KiB"), Ok(4096));
        assert_eq!(parse_lag_limit("1"), Ok(1));
        assert!(parse_lag_limit("0").unwrap_err().contains("at least 1 byte"));
        assert!(parse_lag_limit("4KB").is_err());
    }

    #[test]
    fn sync_policies_retains_and_log_sizes_parse_as_create_takes_them() {
        use shmq::{Fsync, Retain};
        assert_eq!(parse_fsync("never"), Ok(Fsync::Never));
        assert_eq!(parse_fsync("always"), Ok(Fsync::Always));
        assert_eq!(parse_fsync("interval:10ms"), Ok(Fsync::Interval(Duration::from_millis(10))));
        assert!(parse_fsync("interval:0").unwrap_err().contains("more than 0"));
        assert!(parse_fsync("interval:5").is_err());
        assert!(parse_fsync("sometimes").unwrap_err().contains("never, always or interval:DUR"));
        assert_eq!(format_fsync(Fsync::Interval(Duration::from_millis(10))), "interval:10ms");
        assert_eq!(
            parse_fsync(&format_fsync(Fsync::Interval(Duration::from_micros(1500)))).ok(),
            Some(Fsync::Interval(Duration::from_micros(1500)))
        );
        assert_eq!(parse_retain("acked"), Ok(Retain::Acked));
        assert_eq!(parse_retain("1GiB"), Ok(Retain::Bytes(1 << 30)));
        assert!(parse_retain("0").is_err());
        assert!(parse_retain("all").is_err());
        assert_eq!(parse_max_log("64MiB"), Ok(64 << 20));
        assert!(parse_max_log("0").is_err());
    }

    #[test]
    fn permissions_are_octal_and_keep_the_owner() {
        assert_eq!(parse_permissions("600"), Ok(0o600));
        assert_eq!(parse_permissions("0660"), Ok(0o660));
        assert_eq!(parse_permissions("0o640"), Ok(0o640));
        assert!(parse_permissions("400").is_err());
        assert!(parse_permissions("1777").is_err());
        assert!(parse_permissions("rw").is_err());
    }

    #[test]
    fn ages_format_in_at_most_two_units() {
        assert_eq!(format_age(Duration::from_micros(850_400)), "850ms");
        assert_eq!(format_age(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_age(Duration::from_secs(5 * 60 + 3)), "5m03s");
        assert_eq!(format_age(Duration::from_secs(2 * 3600 + 5 * 60 + 59)), "2h05m");
        assert_eq!(format_age(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn sizes_format_readably() {
        assert_eq!(format_size(64), "64 B");
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
