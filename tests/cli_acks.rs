//! The `shmq` binary on subscriptions with explicit acks, run for real: `subs create --ack
//! explicit` and its options, the ack columns of `subs ls`, and `dlq ls|show|purge` on the
//! dead letters that a member (this test process, through the library: `shmq recv` does not
//! ack) rejected. Every `shmq` is a process of its own.
//!
//! Log directories are on the real disk, under cargo's temporary directory for integration
//! tests; queue names carry the test's pid; every child runs under a deadline.

#![cfg(feature = "cli")]

mod cli_support;
mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use cli_support::*;
use common::{LogDir, OP_TIMEOUT};
use serde_json::Value;
use shmq::{Consumer, Queue, Wait, dlq_name};

const SUB: &str = "work";

/// A queue name unique to this test process; the queue and the dead-letter queue of
/// [`SUB`] are removed on drop.
fn name(tag: &str) -> Name {
    let n = Name::new(tag);
    n.dlq(SUB);
    n
}

/// The subscription `sub` of `subs ls QUEUE --json`.
#[track_caller]
fn sub_json(q: &str, sub: &str) -> Value {
    let v = json(&ok(shmq(&["subs", "ls", q, "--json"])));
    v["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == sub).cloned().expect("listed")
}

/// The dead letters of `dlq ls QUEUE SUB --json`.
#[track_caller]
fn dead_letters(q: &str) -> Vec<Value> {
    let v = json(&ok(shmq(&["dlq", "ls", q, SUB, "--json"])));
    assert_eq!(v["schema_version"], 1, "{v:#}");
    assert_eq!(v["not_dead_letters"], serde_json::json!([]), "{v:#}");
    v["dead_letters"].as_array().unwrap().clone()
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Creates durable queue `q` and the explicit-ack subscription [`SUB`] with the command line.
fn durable_with_sub(q: &str, dir: &LogDir) {
    ok(shmq(&["create", q, "--durable", dir.path(), "--capacity", "64KiB", "--max-message", "4KiB"]));
    let o = stdout(&ok(shmq(&[
        "subs",
        "create",
        q,
        SUB,
        "--ack",
        "explicit",
        "--ack-wait",
        "30s",
        "--max-in-flight",
        "8",
        "--max-deliveries",
        "3",
    ])));
    for want in ["created", "explicit acks", "ack wait 30s", "max in flight 8", "max deliveries 3", &dlq_name(q, SUB)] {
        assert!(o.contains(want), "{want:?} missing: {o}");
    }
}

/// The next message of member `rx`: (id, payload, delivery count).
#[track_caller]
fn next(rx: &mut Consumer) -> (u64, Vec<u8>, u32) {
    let m = rx.recv_timeout(OP_TIMEOUT).expect("a message");
    (m.id(), m.to_vec(), m.delivery_count())
}

#[test]
fn rejected_messages_are_counted_listed_shown_and_purged_from_the_command_line() {
    let q = name("flow");
    let dir = LogDir::new("cli-acks-flow");
    durable_with_sub(&q, &dir);
    // The same options again: nothing to do; other ones: refused.
    assert!(
        stdout(&ok(shmq(&[
            "subs",
            "create",
            &q,
            SUB,
            "--ack",
            "explicit",
            "--ack-wait",
            "30s",
            "--max-in-flight",
            "8",
            "--max-deliveries",
            "3"
        ])))
        .contains("exists already")
    );
    fails_saying(1, "acks", &shmq(&["subs", "create", &q, SUB, "--ack", "explicit", "--max-deliveries", "4"]));

    let o = stdout(&ok(shmq(&["send", &q, "--ids", "order 0", "order 1", "bad\tamount 2", "order 3", "order 4"])));
    let ids: Vec<u64> = o.lines().map(|l| l.trim().parse().expect("an id")).collect();
    assert_eq!(ids.len(), 5, "{o}");

    // The member: acks 0 and 3, rejects 1, nacks 2 then rejects it on its second delivery,
    // and holds 4.
    let started = now_ns();
    let mut rx = Consumer::subscribe_with(&q, SUB, Wait::Block).expect("join the subscription");
    let (id, p, n) = next(&mut rx);
    assert_eq!((id, &p[..], n), (ids[0], &b"order 0"[..], 1));
    rx.ack(id).expect("ack 0");
    let (id, _, n) = next(&mut rx);
    assert_eq!((id, n), (ids[1], 1));
    rx.reject(id, "bad amount").expect("reject 1");
    let (id, _, n) = next(&mut rx);
    assert_eq!((id, n), (ids[2], 1));
    rx.nack(id, "try later").expect("nack 2");
    let (id, p, n) = next(&mut rx);
    assert_eq!((id, &p[..], n), (ids[2], &b"bad\tamount 2"[..], 2), "the nacked one comes back first");
    rx.reject(id, "still bad\nreally").expect("reject 2");
    let (id, _, _) = next(&mut rx);
    assert_eq!(id, ids[3]);
    rx.ack(id).expect("ack 3");
    let before_4 = now_ns();
    let (held, _, _) = next(&mut rx);
    assert_eq!(held, ids[4]);

    // `subs ls --json`: the member's doing, counted.
    let s = sub_json(&q, SUB);
    let listed = now_ns();
    assert_eq!(s["ack"], "explicit", "{s:#}");
    assert_eq!(s["in_flight"], 1, "{s:#}");
    assert_eq!(s["acked"], 2, "{s:#}");
    assert_eq!(s["nacked"], 1, "{s:#}");
    assert_eq!(s["expired"], 0, "{s:#}");
    assert_eq!(s["dead_lettered"], 2, "{s:#}");
    assert_eq!(s["redelivered"], 1, "the nacked message was handed out again: {s:#}");
    assert_eq!(s["dlq"], q.dlq(SUB), "{s:#}");
    let oldest = s["oldest_unacked_unix_ns"].as_u64().expect("a message is in flight");
    // The member stamps it from the kernel's coarse clock (the time of its last tick): a
    // tick or so behind the precise clock read for `before_4`.
    let tick = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
    let from = before_4 - 2 * (tick.tv_sec as u64 * 1_000_000_000 + tick.tv_nsec as u64) - 10_000_000;
    assert!((from..=listed).contains(&oldest), "message 4 was handed out in [{from}, {listed}]: {s:#}");
    assert!(s["oldest_unacked_age_ns"].as_u64().is_some(), "{s:#}");
    let d = sub_json(&q, "default");
    assert_eq!(d["ack"], "auto", "{d:#}");
    for field in ["in_flight", "dead_lettered", "oldest_unacked_unix_ns", "oldest_unacked_age_ns", "dlq"] {
        assert!(d[field].is_null(), "{field} of an auto subscription: {d:#}");
    }
    // The table: the ack columns, `-` where they do not apply.
    let text = stdout(&ok(shmq(&["subs", "ls", &q])));
    let header = text.lines().nth(1).expect("a header");
    for col in ["ack", "in flight", "dead-lettered", "oldest unacked", "redelivered"] {
        assert!(header.contains(col), "{col:?} missing: {text}");
    }
    let row = |name: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let work = row(SUB);
    assert_eq!(&work[work.len() - 4..work.len() - 1], ["explicit", "1", "2"], "{text}");
    let age = work.last().unwrap();
    assert!(age.ends_with("ms") || age.ends_with('s'), "an age: {text}");
    let default = row("default");
    assert_eq!(&default[default.len() - 4..], ["auto", "-", "-", "-"], "{text}");

    // `dlq ls`, while the member (which moved them) still runs.
    let letters = dead_letters(&q);
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let want = [(ids[1], 1, "bad amount", "order 1", 7), (ids[2], 2, "still bad\nreally", "bad\\tamount 2", 12)];
    for (l, (id, deliveries, reason, preview, len)) in letters.iter().zip(want) {
        assert_eq!(l["id"], id, "{l:#}");
        assert_eq!(l["deliveries"], deliveries, "{l:#}");
        assert_eq!(l["reason"], reason, "{l:#}");
        assert_eq!(l["preview"], preview, "{l:#}");
        assert_eq!(l["len"], len, "{l:#}");
        let moved = l["unix_ns"].as_u64().unwrap();
        assert!((started..=listed).contains(&moved), "moved while the member ran: {l:#}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l:#}");
        assert!(l.get("payload_base64").is_none(), "ls shows a preview only: {l:#}");
    }
    let text = stdout(&ok(shmq(&["dlq", "ls", &q, SUB])));
    assert!(text.contains("2 dead letter(s)") && text.contains(&q.dlq(SUB)), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a summary, a header and one line per letter: {text}");
    for (line, (id, deliveries, reason, preview)) in lines[2..]
        .iter()
        .zip([(ids[1], "1", "bad amount", "order 1"), (ids[2], "2", "still bad\\nreally", "bad\\tamount 2")])
    {
        assert!(line.trim_start().starts_with(&format!("{id} ")), "{line}");
        assert!(line.contains(reason) && line.ends_with(preview), "{line}");
        assert_eq!(line.split_whitespace().nth(1), Some(deliveries), "{line}");
    }
    // ... and it takes nothing: listing again shows the same, and the dead-letter queue still
    // holds both for its consumer.
    assert_eq!(dead_letters(&q), letters);
    let snap = Queue::inspect(&q.dlq(SUB)).expect("the dead-letter queue");
    assert_eq!(snap.messages, 2, "nothing received from it");
    assert_eq!(
        Some(snap.subscriptions[0].position),
        letters[0]["dlq_id"].as_u64(),
        "its consumer's position did not move from the first letter"
    );

    // `dlq show`: one letter, its whole payload.
    let text = stdout(&ok(shmq(&["dlq", "show", &q, SUB, &ids[2].to_string()])));
    for want in [
        format!("id          {}", ids[2]),
        "deliveries  2".to_owned(),
        "reason      still bad\\nreally".to_owned(),
        "len         12".to_owned(),
        "payload     bad\\tamount 2".to_owned(),
    ] {
        assert!(text.contains(&want), "{want:?} missing: {text}");
    }
    let v = json(&ok(shmq(&["dlq", "show", &q, SUB, &ids[2].to_string(), "--json"])));
    assert_eq!((v["id"].as_u64(), v["deliveries"].as_u64()), (Some(ids[2]), Some(2)), "{v:#}");
    assert_eq!(v["dlq_id"], letters[1]["dlq_id"], "{v:#}");
    assert_eq!(v["subscription"], SUB);
    let payload = base64::engine::general_purpose::STANDARD.decode(v["payload_base64"].as_str().unwrap()).unwrap();
    assert_eq!(payload, b"bad\tamount 2");
    let text = stdout(&ok(shmq(&["dlq", "show", &q, SUB, &ids[1].to_string(), "--hex"])));
    assert!(text.contains("payload     6f726465722031"), "{text}");
    // A message that was acked is no dead letter.
    fails_saying(1, "none of the 2 dead letter(s)", &shmq(&["dlq", "show", &q, SUB, &ids[0].to_string()]));

    // `dlq purge`: not without --yes when nobody can be asked; with it, all of them.
    fails_saying(2, "--yes", &shmq(&["dlq", "purge", &q, SUB]));
    assert_eq!(dead_letters(&q).len(), 2, "a refused purge removes nothing");
    let o = stdout(&ok(shmq(&["dlq", "purge", &q, SUB, "--yes"])));
    assert!(o.contains("purged 2 dead letter(s)"), "{o}");
    assert_eq!(dead_letters(&q), Vec::<Value>::new());
    let text = stdout(&ok(shmq(&["dlq", "ls", &q, SUB])));
    assert!(text.contains("0 dead letter(s)") && text.lines().count() == 1, "{text}");
    assert_eq!(Queue::inspect(&q.dlq(SUB)).unwrap().messages, 0);

    // A letter moved after the purge is listed alone: `ls` starts where the consumer stands.
    rx.reject(held, "late").expect("reject 4");
    let letters = dead_letters(&q);
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!((letters[0]["id"].as_u64(), letters[0]["reason"].as_str()), (Some(ids[4]), Some("late")));
    let s = sub_json(&q, SUB);
    assert_eq!((s["in_flight"].as_u64(), s["dead_lettered"].as_u64()), (Some(0), Some(3)), "{s:#}");
    assert!(s["oldest_unacked_unix_ns"].is_null(), "nothing in flight: {s:#}");
    drop(rx);
}

#[test]
fn ack_options_are_checked_and_dlq_errors_say_what_is_missing() {
    let q = name("errs");
    let dir = LogDir::new("cli-acks-errs");
    durable_with_sub(&q, &dir);
    ok(shmq(&["subs", "create", &q, "plain"]));

    // Usage errors (status 2): options for explicit acks without them, a lag limit with them,
    // values out of range.
    for (args, says) in [
        (&["--ack-wait", "1s"][..], "--ack explicit"),
        (&["--max-in-flight", "4"], "--ack explicit"),
        (&["--max-deliveries", "2"], "--ack explicit"),
        (&["--ack", "explicit", "--lag-limit", "4KiB"], "--lag-limit"),
        (&["--ack", "explicit", "--ack-wait", "0"], "--ack-wait"),
        (&["--ack", "explicit", "--ack-wait", "5"], "missing unit"),
        (&["--ack", "explicit", "--max-in-flight", "0"], "--max-in-flight"),
        (&["--ack", "explicit", "--max-in-flight", "1025"], "--max-in-flight"),
        (&["--ack", "explicit", "--max-deliveries", "0"], "--max-deliveries"),
        (&["--ack", "sometimes"], "--ack"),
    ] {
        let all: Vec<&str> = ["subs", "create", &*q, "other"].iter().chain(args).copied().collect();
        fails_saying(2, says, &shmq(&all));
    }
    assert!(
        sub_json_names(&q).iter().all(|n| n != "other"),
        "no subscription made by a refused command: {:?}",
        sub_json_names(&q)
    );

    // Explicit acks need a durable queue: a runtime error that says so.
    let v = name("volatile");
    ok(shmq(&["create", &v]));
    fails_saying(1, "durable", &shmq(&["subs", "create", &v, SUB, "--ack", "explicit"]));

    // Each dlq command names what is missing, with status 1.
    let gone = name("gone");
    for cmd in [&["dlq", "ls"][..], &["dlq", "purge"], &["dlq", "show"]] {
        let with = |queue: &str, sub: &str| -> Vec<String> {
            let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            a.extend([queue.to_owned(), sub.to_owned()]);
            if cmd[1] == "show" {
                a.push("0".into());
            }
            if cmd[1] == "purge" {
                a.push("--yes".into());
            }
            a
        };
        let run = |a: Vec<String>| shmq(&a.iter().map(String::as_str).collect::<Vec<_>>());
        fails_saying(1, &format!("no queue named \"{}\"", &*gone), &run(with(&gone, SUB)));
        fails_saying(1, "has no subscription \"nope\"", &run(with(&q, "nope")));
        fails_saying(1, "acknowledges by receiving", &run(with(&q, "plain")));
    }
    fails_saying(1, "none of the 0 dead letter(s)", &shmq(&["dlq", "show", &q, SUB, "8"]));
    // A dead-letter queue removed by hand.
    Queue::remove(&q.dlq(SUB)).expect("remove the dead-letter queue");
    fails_saying(1, "does not exist", &shmq(&["dlq", "ls", &q, SUB]));
}

fn sub_json_names(q: &str) -> Vec<String> {
    let v = json(&ok(shmq(&["subs", "ls", q, "--json"])));
    v["subscriptions"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}
