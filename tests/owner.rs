//! Who may use a queue's object: the owner and mode checks on open, across users.
//!
//! Needs root (to `chown` objects and to start children as other users); as another user
//! the test says so and checks only what an unprivileged user can (its own `0666` queue).
//! Children drop to the uid, gid and groups they are given before they touch the queue.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Child, TestQueue};
use shmq::{Error, Options, Producer, Queue};

const OWNER: u32 = 60_001;
const OTHER: u32 = 60_002;
const GROUP: u32 = 60_100;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `ok`, `permission MESSAGE`, or `other ERROR`.
fn outcome<T>(r: Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Error::Permission(m)) => format!("permission {m}"),
        Err(e) => format!("other {e:?}"),
    }
}

#[test]
fn child_role() {
    common::run_child(|role, queue| match role {
        "open_as" => {
            let uid: u32 = common::arg("uid");
            let gid: u32 = common::arg("gid");
            let groups: String = common::arg("groups");
            let groups: Vec<libc::gid_t> =
                groups.split(',').filter(|g| !g.is_empty()).map(|g| g.parse().unwrap()).collect();
            // SAFETY: plain system calls with valid arguments; this process has one thread
            // running (libtest's main thread waits for this one), and the calls are
            // process-wide in glibc anyway.
            unsafe {
                assert_eq!(libc::setgroups(groups.len(), groups.as_ptr()), 0, "setgroups");
                assert_eq!(libc::setresgid(gid, gid, gid), 0, "setresgid");
                assert_eq!(libc::setresuid(uid, uid, uid), 0, "setresuid");
            }
            if common::arg::<String>("action") == "remove" {
                common::say(&format!("remove {}", outcome(Queue::remove(queue))));
                return;
            }
            let inspect = outcome(Queue::inspect(queue));
            let producer = outcome(Producer::open(queue).and_then(|mut tx| tx.try_send(b"hi")));
            common::say(&format!("inspect {inspect}"));
            common::say(&format!("producer {producer}"));
        }
        other => panic!("unknown role {other}"),
    });
}

/// A queue made by root, then given to `uid:gid` with `mode`.
fn queue_as(case: &str, uid: u32, gid: u32, mode: u32) -> TestQueue {
    let q = TestQueue::create(case, Options::new().capacity(4096).max_message(64));
    std::os::unix::fs::chown(q.path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(q.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    q
}

/// What `inspect` and `Producer::open` + send give to a process of `uid`, `gid`, `groups`.
fn open_as(q: &TestQueue, uid: u32, gid: u32, groups: &[u32]) -> (String, String) {
    let groups = groups.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let args = [("uid", uid.to_string()), ("gid", gid.to_string()), ("groups", groups), ("action", "open".into())];
    let mut child = Child::spawn("open_as", &q.name, &args);
    let inspect = child.expect("inspect");
    let producer = child.expect("producer");
    child.wait_ok();
    (inspect, producer)
}

#[test]
fn another_users_queue_is_refused_unless_shared_through_a_group_and_world_writable_ones_only_serve_their_owner() {
    if !is_root() {
        // Unprivileged, we can only check that our own world-writable queue serves us.
        eprintln!("not root: checking only the owner's own 0666 queue");
        let q = TestQueue::create("own-0666", Options::new().capacity(4096).max_message(64).permissions(0o666));
        Producer::open(&q.name).expect("our own 0666 queue");
        return;
    }
    // Another user's world-writable queue: refused by everyone else, root included, with
    // the owner and the mode named.
    let q = queue_as("other-0666", OWNER, OWNER, 0o666);
    let (inspect, producer) = open_as(&q, OTHER, OTHER, &[]);
    for got in [&inspect, &producer] {
        assert!(got.starts_with("permission"), "{got}");
        assert!(got.contains(&format!("uid {OWNER}")) && got.contains("mode 0666"), "{got}");
    }
    match Producer::open(&q.name) {
        Err(Error::Permission(m)) => assert!(m.contains("writable by every user"), "{m}"),
        other => panic!("root opening another user's 0666 queue: {other:?}"),
    }
    // Its owner uses it.
    assert_eq!(open_as(&q, OWNER, OWNER, &[]), ("ok".into(), "ok".into()));

    // Another user's queue readable by others: the kernel lets us read it, we refuse it
    // (not shared through a group of ours); writing, the kernel refuses.
    let q = queue_as("other-0644", OWNER, OWNER, 0o644);
    let (inspect, producer) = open_as(&q, OTHER, OTHER, &[]);
    assert!(inspect.starts_with("permission") && inspect.contains(&format!("uid {OWNER}")), "{inspect}");
    assert!(inspect.contains("mode 0644"), "{inspect}");
    assert!(producer.starts_with("permission"), "{producer}");
    // Root may use any owner's queue that is not world-writable.
    Producer::open(&q.name).expect("root opens another user's 0644 queue");

    // Shared through a group: 0660 and a group we are in (supplementary or effective).
    let q = queue_as("group-0660", OWNER, GROUP, 0o660);
    assert_eq!(open_as(&q, OTHER, OTHER, &[GROUP]), ("ok".into(), "ok".into()));
    assert_eq!(open_as(&q, OTHER, GROUP, &[]), ("ok".into(), "ok".into()));
    // Not in the group: the kernel refuses both.
    let (inspect, producer) = open_as(&q, OTHER, OTHER, &[]);
    assert!(inspect.starts_with("permission") && producer.starts_with("permission"), "{inspect} / {producer}");

    // 0640 with our group: we may look, and the kernel refuses writing.
    let q = queue_as("group-0640", OWNER, GROUP, 0o640);
    let (inspect, producer) = open_as(&q, OTHER, OTHER, &[GROUP]);
    assert_eq!(inspect, "ok");
    assert!(producer.starts_with("permission"), "{producer}");

    // Root's queue readable by all: trusted for reading by anyone.
    let q = queue_as("root-0644", 0, 0, 0o644);
    let (inspect, _) = open_as(&q, OTHER, OTHER, &[]);
    assert_eq!(inspect, "ok");

    // Our own world-writable queue: ours, so used.
    let q = queue_as("own-0666", OTHER, OTHER, 0o666);
    assert_eq!(open_as(&q, OTHER, OTHER, &[]), ("ok".into(), "ok".into()));
}

/// A group member may use a 0660 queue but not remove it (`/dev/shm` is sticky): its
/// `Queue::remove` is refused and leaves the queue working, not closed.
#[test]
fn a_group_member_that_may_not_remove_a_queue_leaves_it_working() {
    if !is_root() {
        eprintln!("not root: cannot act as another user; skipped");
        return;
    }
    let q = queue_as("group-rm", OWNER, GROUP, 0o660);
    let args = [
        ("uid", OTHER.to_string()),
        ("gid", OTHER.to_string()),
        ("groups", GROUP.to_string()),
        ("action", "remove".into()),
    ];
    let mut child = Child::spawn("open_as", &q.name, &args);
    let said = child.expect("remove");
    child.wait_ok();
    assert!(said.starts_with("permission"), "a group member's remove: {said}");
    let s = Queue::inspect(&q.name).expect("the queue is still there");
    assert!(!s.closed, "a refused remove closed the queue");
    assert_eq!(open_as(&q, OTHER, OTHER, &[GROUP]), ("ok".into(), "ok".into()), "and it still works");
}
