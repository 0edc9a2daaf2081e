/* Subscriptions from C. `subscriptions basic`: the options struct and its checks, and
 * shmq_recv_info on a queue's default subscription (ids, delivery counts, a buffer too
 * small, a peeked message). `subscriptions protocol`: fan-out to two subscriptions read by
 * two processes; shared work between two member processes; a member killed with SIGKILL
 * mid-stream whose messages reach the survivor; a lapped subscription; a removed
 * subscription closing its blocked member. Producers, members and the checking parent are
 * separate processes; results come back through a MAP_SHARED board. */
#include "check.h"

#include <sys/mman.h>

/* `expr` returns `want` and shmq_last_error() then contains `text`. */
#define CHECK_ERR(expr, want, text)                                                    \
    do {                                                                               \
        CHECK_RC(expr, want);                                                          \
        const char *e_ = shmq_last_error();                                            \
        CHECK(e_ != NULL);                                                             \
        CHECK_MSG(strstr(e_, (text)) != NULL, "last error %s lacks \"%s\"", e_, (text)); \
    } while (0)

#define MAX_N 100000
#define MAX_LEN 200

/* Message `seq`: [seq:8][filler], 8 to MAX_LEN bytes. */
static size_t make(uint64_t seq, uint8_t *buf) {
    size_t len = 8 + (size_t)(mix(seq) % (MAX_LEN - 7));
    memcpy(buf, &seq, 8);
    for (size_t j = 8; j < len; j++) buf[j] = (uint8_t)(seq * 7 + j);
    return len;
}

/* The seq of a received message, after checking its bytes. */
static uint64_t decode(const uint8_t *buf, size_t len) {
    CHECK_MSG(len >= 8, "message of %zu bytes", len);
    uint64_t seq;
    memcpy(&seq, buf, 8);
    CHECK_MSG(seq < MAX_N, "seq %" PRIu64, seq);
    uint8_t want[MAX_LEN];
    size_t wlen = make(seq, want);
    CHECK_MSG(len == wlen && memcmp(buf, want, len) == 0, "message %" PRIu64 " differs", seq);
    return seq;
}

/* What the processes of one case report to the parent (anonymous shared memory). */
typedef struct {
    uint64_t distinct;              /* seqs received at least once, by anyone */
    uint32_t total[MAX_N];          /* times each seq was received, by anyone */
    uint8_t got[2][MAX_N];          /* times member (or subscription) m received seq */
    uint8_t redelivered[2][MAX_N];  /* m received seq with delivery_count >= 2 */
    uint64_t ids[2][MAX_N];         /* the id m saw for seq */
    uint64_t received[2];
    uint64_t victim_last;           /* the seq the killed member was peeking at */
    uint32_t victim_killing;        /* set (after victim_last) just before the SIGKILL */
} board;

static board *b;
static const char *queue;
static uint64_t n;
static signal_pipe ready;

static board *new_board(void) {
    void *p = mmap(NULL, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return (board *)p;
}

static void free_board(void) {
    munmap(b, sizeof(board));
    b = NULL;
}

static void record(int m, uint64_t seq, const shmq_msg_info *info) {
    CHECK_MSG(b->got[m][seq] < 255, "seq %" PRIu64 " received too often", seq);
    b->got[m][seq]++;
    if (info->delivery_count >= 2) b->redelivered[m][seq] = 1;
    b->ids[m][seq] = info->id;
    b->received[m]++;
    /* Two members may record the same seq at once (around a kill): atomics. */
    if (__atomic_fetch_add(&b->total[seq], 1, __ATOMIC_RELAXED) == 0)
        __atomic_fetch_add(&b->distinct, 1, __ATOMIC_RELEASE);
}

/* Sends messages 0..n-1, each waiting at most STEP_NS for room. */
static void produce(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    for (uint64_t seq = 0; seq < n; seq++) CHECK_OK(shmq_send(p, buf, make(seq, buf), STEP_NS));
    shmq_producer_close(p);
}

static void close_pipe(signal_pipe *s) {
    close(s->fd[0]);
    close(s->fd[1]);
}

/* ---- basic: no other subscription than the default one ---- */

static void subscription_options_are_checked(void) {
    CHECK(sizeof(shmq_subscription_options) == 40);
    CHECK(sizeof(shmq_msg_info) == 24);
    CHECK(strstr(shmq_strerror(SHMQ_ERR_LAPPED), "lapped") != NULL);
    CHECK(SHMQ_ERR_LAPPED == -17);

    shmq_subscription_options o;
    memset(&o, 0xab, sizeof o);
    CHECK_OK(shmq_subscription_options_init(&o));
    CHECK(o.size == sizeof o && o.start == SHMQ_START_NOW && o.ack == SHMQ_ACK_AUTO);
    CHECK(o.lag_limit == 0 && o.ack_wait_ns == 0 && o.max_in_flight == 0 && o.max_deliveries == 0);
    CHECK_ERR(shmq_subscription_options_init_sized(&o, 39), SHMQ_ERR_INVALID, "size 39");
    CHECK_ERR(shmq_subscription_options_init_sized(NULL, sizeof o), SHMQ_ERR_INVALID, "NULL");

    /* A newer header's struct: the fields this library knows, then more, zeroed. */
    struct {
        shmq_subscription_options v1;
        uint64_t later;
    } v2;
    memset(&v2, 0xcd, sizeof v2);
    CHECK_OK(shmq_subscription_options_init(&v2.v1));
    CHECK_OK(shmq_subscription_options_init_sized(&v2.v1, sizeof v2));
    CHECK(v2.v1.size == sizeof v2 && v2.later == 0);

    const char *q = unique_name("subopts");
    create_queue(q, SHMQ_MODE_MPSC, 1 << 12, 256);
    /* Everything below is refused, and no subscription is made. */
    v2.later = 1;
    CHECK_ERR(shmq_subscription_create(q, "s", &v2.v1), SHMQ_ERR_INVALID, "knows only the first 40 bytes");
    o.size = 8;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "shmq_subscription_options_init");
    CHECK_OK(shmq_subscription_options_init(&o));
    o.start = 3;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "SHMQ_START_NOW");
    CHECK_OK(shmq_subscription_options_init(&o));
    o.ack = 2;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "ack 2: use SHMQ_ACK_AUTO or SHMQ_ACK_EXPLICIT");
    CHECK_OK(shmq_subscription_options_init(&o));
    o.ack_wait_ns = 1000;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "ack_wait_ns is set but ack is SHMQ_ACK_AUTO");
    CHECK_OK(shmq_subscription_options_init(&o));
    o.max_in_flight = 8;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "max_in_flight is set but ack is SHMQ_ACK_AUTO");
    CHECK_OK(shmq_subscription_options_init(&o));
    o.max_deliveries = 5;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "max_deliveries is set but ack is SHMQ_ACK_AUTO");
    /* Explicit acks need a durable queue (tests/c/acks.c has them on one). */
    CHECK_OK(shmq_subscription_options_init(&o));
    o.ack = SHMQ_ACK_EXPLICIT;
    CHECK_ERR(shmq_subscription_create(q, "s", &o), SHMQ_ERR_INVALID, "is volatile");
    CHECK_OK(shmq_subscription_options_init(&o));
    CHECK_ERR(shmq_subscription_create(q, NULL, &o), SHMQ_ERR_INVALID, "subscription name: NULL");
    CHECK_ERR(shmq_subscription_create(NULL, "s", &o), SHMQ_ERR_INVALID, "queue name: NULL");
    CHECK_ERR(shmq_subscription_remove(q, NULL), SHMQ_ERR_INVALID, "subscription name: NULL");
    shmq_consumer *c = (shmq_consumer *)1;
    CHECK_ERR(shmq_consumer_subscribe(q, NULL, &c), SHMQ_ERR_INVALID, "subscription name: NULL");
    CHECK(c == NULL);
    CHECK_ERR(shmq_consumer_subscribe(q, "s", NULL), SHMQ_ERR_INVALID, "NULL out-pointer");
    CHECK_RC(shmq_subscription_remove(q, "s"), SHMQ_ERR_NOT_FOUND);
    CHECK_OK(shmq_remove(q));
    printf("ok subscription_options_are_checked\n");
}

/* shmq_recv_info on the default subscription (shmq_consumer_open): ids increase, each
 * message is delivered once; a buffer too small leaves the message; a peeked message is
 * the one received; errors zero *info. */
static void recv_info_on_the_default_subscription(void) {
    queue = unique_name("recvinfo");
    n = 40;
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 14, 256);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    uint8_t buf[256];
    size_t len = 99;
    shmq_msg_info info;
    memset(&info, 0xee, sizeof info);
    CHECK_ERR(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY, "queue is empty");
    CHECK(len == 0 && info.id == 0 && info.delivery_count == 0 && info.reserved == 0 && info.missed_bytes == 0);
    CHECK_ERR(shmq_recv_info(c, buf, sizeof buf, NULL, &info, 0), SHMQ_ERR_INVALID, "NULL len");
    CHECK_ERR(shmq_recv_info(c, NULL, 8, &len, &info, 0), SHMQ_ERR_INVALID, "NULL buf");
    CHECK_ERR(shmq_recv_info(NULL, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_INVALID, "NULL consumer");

    wait_child(spawn(produce, NULL));

    uint64_t last_id = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t want = make(i, buf);
        memset(&info, 0xee, sizeof info);
        if (want > 8) {
            /* Too small: the size needed, nothing else, and the message stays. */
            CHECK_ERR(shmq_recv_info(c, buf, want - 1, &len, &info, STEP_NS), SHMQ_ERR_BUFFER_TOO_SMALL,
                      "too small");
            CHECK(len == want && info.id == 0 && info.delivery_count == 0);
        }
        if (i % 5 == 1) {
            /* A peeked message is the one received. */
            const void *data;
            CHECK_OK(shmq_peek(c, &data, &len, 0));
            CHECK(decode(data, len) == i);
        }
        if (i % 7 == 3) {
            CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, NULL, STEP_NS));
            CHECK(decode(buf, len) == i);
            continue;
        }
        /* The exact size on odd messages, a larger buffer on even ones. */
        size_t cap = i % 2 ? want : sizeof buf;
        CHECK_OK(shmq_recv_info(c, buf, cap, &len, &info, STEP_NS));
        CHECK(decode(buf, len) == i);
        CHECK_MSG(i == 0 || info.id > last_id, "id %" PRIu64 " after %" PRIu64, info.id, last_id);
        CHECK(info.delivery_count == 1 && info.reserved == 0 && info.missed_bytes == 0);
        last_id = info.id;
    }
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    CHECK_RC(shmq_release(c), SHMQ_ERR_INVALID); /* the peeked message was taken */
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok recv_info_on_the_default_subscription\n");
}

/* ---- protocol: named subscriptions ---- */

/* Subscription `arg` (0: "a", 1: "b") receives all n messages in order. */
static void fan_out_reader(void *arg) {
    int m = (int)(uintptr_t)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, m ? "b" : "a", &c));
    CHECK_OK(shmq_consumer_set_wait(c, SHMQ_WAIT_BLOCK));
    signal_ready(&ready);
    uint8_t buf[MAX_LEN];
    size_t len;
    shmq_msg_info info;
    for (uint64_t i = 0; i < n; i++) {
        CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS));
        uint64_t seq = decode(buf, len);
        CHECK_MSG(seq == i, "subscription %d: seq %" PRIu64 ", want %" PRIu64, m, seq, i);
        CHECK(info.delivery_count == 1);
        record(m, seq, &info);
    }
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);
}

static void every_subscription_receives_every_message(void) {
    queue = unique_name("fanout");
    n = 20000;
    b = new_board();
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 13, MAX_LEN);
    /* Nobody reads the default subscription here: without removing it, it would hold the
     * producer back once the queue is full. */
    CHECK_OK(shmq_subscription_remove(queue, "default"));
    shmq_consumer *c;
    CHECK_RC(shmq_consumer_open(queue, &c), SHMQ_ERR_NOT_FOUND);
    CHECK_RC(shmq_subscription_remove(queue, "default"), SHMQ_ERR_NOT_FOUND);
    CHECK_OK(shmq_subscription_create(queue, "a", NULL));
    shmq_subscription_options o;
    CHECK_OK(shmq_subscription_options_init(&o));
    CHECK_OK(shmq_subscription_create(queue, "b", &o));
    CHECK_OK(shmq_subscription_create(queue, "b", &o)); /* same options: nothing to do */
    o.lag_limit = 4096;
    CHECK_RC(shmq_subscription_create(queue, "b", &o), SHMQ_ERR_INVALID);
    CHECK_ERR(shmq_consumer_subscribe(queue, "nope", &c), SHMQ_ERR_NOT_FOUND, "nope");
    CHECK(c == NULL);

    signal_pipe_init(&ready);
    pid_t readers[2];
    for (int m = 0; m < 2; m++) readers[m] = spawn(fan_out_reader, (void *)(uintptr_t)m);
    for (int m = 0; m < 2; m++) await_ready(&ready);
    pid_t producer = spawn(produce, NULL);
    wait_child(producer);
    for (int m = 0; m < 2; m++) wait_child(readers[m]);

    for (uint64_t i = 0; i < n; i++) {
        CHECK_MSG(b->got[0][i] == 1 && b->got[1][i] == 1, "seq %" PRIu64 ": %u and %u times", i,
                  b->got[0][i], b->got[1][i]);
        CHECK_MSG(b->ids[0][i] == b->ids[1][i], "seq %" PRIu64 ": ids %" PRIu64 " and %" PRIu64, i,
                  b->ids[0][i], b->ids[1][i]);
        CHECK(i == 0 || b->ids[0][i] > b->ids[0][i - 1]);
    }
    CHECK_OK(shmq_subscription_remove(queue, "a"));
    CHECK_OK(shmq_subscription_remove(queue, "b"));
    CHECK_OK(shmq_remove(queue));
    close_pipe(&ready);
    free_board();
    printf("ok every_subscription_receives_every_message: 2 subscriptions x %" PRIu64 " messages, same ids\n", n);
}

static int victim = -1;         /* the member that kills itself, or -1 */
static uint64_t kill_after;     /* after receiving this many messages */

/* Whether a member may stop: every seq was received by someone and, if a member was
 * killed, the message it was peeking at came to this one. */
static int done(int m) {
    if (__atomic_load_n(&b->distinct, __ATOMIC_ACQUIRE) != n) return 0;
    if (victim < 0 || m == victim) return 1;
    return __atomic_load_n(&b->victim_killing, __ATOMIC_ACQUIRE) && b->got[m][b->victim_last] > 0;
}

/* Member `arg` of subscription "work": receives until done. The victim kills itself with
 * SIGKILL after kill_after messages, while peeking at the next one: it dies in the middle
 * of a batch, whatever the batch boundaries. */
static void member(void *arg) {
    int m = (int)(uintptr_t)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, "work", &c));
    signal_ready(&ready);
    uint8_t buf[MAX_LEN];
    size_t len;
    shmq_msg_info info;
    uint64_t last_id = 0;
    int64_t deadline = now_ns() + 4 * STEP_NS;
    for (;;) {
        if (m == victim && b->received[m] == kill_after) {
            const void *data;
            CHECK_OK(shmq_peek(c, &data, &len, STEP_NS));
            b->victim_last = decode(data, len);
            __atomic_store_n(&b->victim_killing, 1, __ATOMIC_RELEASE);
            kill(getpid(), SIGKILL);
        }
        int rc = shmq_recv_info(c, buf, sizeof buf, &len, &info, 20 * NS_PER_MS);
        if (rc == SHMQ_ERR_TIMEOUT) {
            if (done(m)) break;
            CHECK_MSG(now_ns() < deadline, "member %d: %" PRIu64 " of %" PRIu64 " seqs seen, victim's last %s", m,
                      __atomic_load_n(&b->distinct, __ATOMIC_ACQUIRE), n,
                      victim >= 0 && b->got[m][b->victim_last] ? "seen again" : "not seen again");
            continue;
        }
        CHECK_MSG(rc == SHMQ_OK, "member %d: %s: %s", m, shmq_strerror(rc), shmq_last_error());
        uint64_t seq = decode(buf, len);
        CHECK(info.delivery_count >= 1);
        if (info.delivery_count == 1) {
            /* First deliveries reach a member in send order. */
            CHECK_MSG(b->received[m] == 0 || info.id > last_id, "member %d: id %" PRIu64 " after %" PRIu64, m,
                      info.id, last_id);
            last_id = info.id;
        }
        record(m, seq, &info);
        /* The survivor is slow until the victim is dead, so that the victim surely gets
         * its kill_after messages (and is mid-stream when it dies). */
        if (victim >= 0 && m != victim && !__atomic_load_n(&b->victim_killing, __ATOMIC_ACQUIRE)) sleep_ms(1);
    }
    shmq_consumer_close(c);
}

/* Two members share subscription "work"; with `kill` the first one dies mid-stream. On a
 * `tiny` ring (1 KiB) a producer reuses the space one member released while the other is
 * still looking at it to claim the next batch. */
static void members_share_the_work(int kill, int tiny) {
    queue = unique_name(kill ? "killed" : tiny ? "tiny" : "work");
    n = kill ? 20000 : tiny ? 100000 : 30000;
    b = new_board();
    victim = kill ? 0 : -1;
    kill_after = 100;
    create_queue(queue, SHMQ_MODE_MPSC, tiny ? 1 << 10 : 1 << 13, MAX_LEN);
    CHECK_OK(shmq_subscription_remove(queue, "default"));
    CHECK_OK(shmq_subscription_create(queue, "work", NULL));
    signal_pipe_init(&ready);
    pid_t members[2];
    for (int m = 0; m < 2; m++) members[m] = spawn(member, (void *)(uintptr_t)m);
    for (int m = 0; m < 2; m++) await_ready(&ready);
    pid_t producer = spawn(produce, NULL);
    wait_child(producer);
    for (int m = 0; m < 2; m++) {
        if (m == victim) {
            int status = wait_child_status(members[m], 4 * STEP_NS);
            CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "the victim was to kill itself after %" PRIu64 " messages; status 0x%x", kill_after, status);
        } else {
            wait_child(members[m]);
        }
    }

    /* Every message reaches one member once: a message shmq_recv_info returned was
     * released, so not even the victim's are received again. */
    uint64_t total = b->received[0] + b->received[1], redelivered = 0;
    CHECK(b->distinct == n && total == n);
    for (uint64_t i = 0; i < n; i++) {
        CHECK_MSG(b->got[0][i] + b->got[1][i] == 1, "seq %" PRIu64 ": %u times by member 0, %u by member 1", i,
                  b->got[0][i], b->got[1][i]);
        redelivered += b->redelivered[0][i] + b->redelivered[1][i];
    }
    if (kill) {
        CHECK(b->received[0] == kill_after);
        /* The message the victim was peeking at reaches the survivor, as a redelivery (with
         * the rest of the victim's batch, if any). */
        CHECK_MSG(b->got[1][b->victim_last] == 1 && b->redelivered[1][b->victim_last],
                  "seq %" PRIu64 " (the victim's peeked one) did not reach the survivor as a redelivery",
                  b->victim_last);
        CHECK_MSG(redelivered <= 16, "%" PRIu64 " redeliveries: more than one batch", redelivered);
    } else {
        CHECK(redelivered == 0);
        CHECK_MSG(b->received[0] > 0 && b->received[1] > 0, "one member got everything: %" PRIu64 " / %" PRIu64,
                  b->received[0], b->received[1]);
    }
    uint64_t r0 = b->received[0], r1 = b->received[1];
    CHECK_OK(shmq_remove(queue));
    close_pipe(&ready);
    free_board();
    if (kill)
        printf("ok a_killed_members_messages_reach_the_survivor: %" PRIu64 " messages, %" PRIu64
               " received by the victim before SIGKILL, %" PRIu64 " by the survivor (%" PRIu64
               " of them handed over from the victim's batch)\n",
               n, r0, r1, redelivered);
    else
        printf("ok two_members_share_the_work%s: %" PRIu64 " messages, each once (%" PRIu64 " + %" PRIu64 ")\n",
               tiny ? " on a tiny ring" : "", n, r0, r1);
}

/* The bytes a message of `len` bytes takes in the stream: a 16-byte header, then the
 * payload rounded up to 8. */
#define RECORD(len) (16 + (((uint64_t)(len) + 7) & ~(uint64_t)7))

/* Sends `n` messages of 200 bytes, each with timeout 0: nothing may hold it back. */
static void flood(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    for (uint64_t seq = 0; seq < n; seq++) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, &seq, 8);
        CHECK_OK(shmq_send(p, buf, 200, 0));
    }
    shmq_producer_close(p);
}

static void send_one(void *arg) {
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_send(p, arg, strlen((const char *)arg), STEP_NS));
    shmq_producer_close(p);
}

/* A subscription with a lag limit that falls behind is lapped: producers go on without it,
 * its next receive says how much it missed, and it goes on with the newest messages. */
static void a_lagging_subscription_is_lapped(void) {
    queue = unique_name("lapped");
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 14, 1024);
    CHECK_OK(shmq_subscription_remove(queue, "default"));
    shmq_subscription_options o;
    CHECK_OK(shmq_subscription_options_init(&o));
    o.lag_limit = 4096;
    CHECK_OK(shmq_subscription_create(queue, "slow", &o));
    CHECK_OK(shmq_subscription_create(queue, "slow", &o));
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, "slow", &c));
    uint8_t buf[1024];
    size_t len;
    shmq_msg_info info;

    wait_child(spawn(send_one, "first"));
    CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS));
    CHECK(len == 5 && memcmp(buf, "first", 5) == 0);
    uint64_t first_id = info.id;

    /* 400 records of 16 + 200 bytes: about five times the capacity. */
    n = 400;
    wait_child(spawn(flood, NULL));
    memset(&info, 0xee, sizeof info);
    CHECK_ERR(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS), SHMQ_ERR_LAPPED, "lapped");
    /* It missed every record of the flood (and the padding where the ring wrapped). */
    CHECK_MSG(info.missed_bytes >= n * RECORD(200), "missed %" PRIu64, info.missed_bytes);
    CHECK(len == 0 && info.id == 0 && info.delivery_count == 0);
    uint64_t missed = info.missed_bytes;

    /* Rejoined at the producers' position: the next message is the next one sent. */
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    wait_child(spawn(send_one, "after"));
    CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    /* Ids are stream positions: exactly the missed bytes lie between "first" and "after". */
    CHECK_MSG(info.id == first_id + RECORD(5) + missed, "after: id %" PRIu64 ", first %" PRIu64 ", missed %" PRIu64,
              info.id, first_id, missed);
    CHECK(info.delivery_count == 1 && info.missed_bytes == 0);

    /* Lapped again, seen through shmq_recv this time. */
    wait_child(spawn(flood, NULL));
    CHECK_ERR(shmq_recv(c, buf, sizeof buf, &len, STEP_NS), SHMQ_ERR_LAPPED, "missed");
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);

    /* And through shmq_recv_info with a buffer below max_message (which looks first). */
    wait_child(spawn(flood, NULL));
    memset(&info, 0xee, sizeof info);
    CHECK_ERR(shmq_recv_info(c, buf, 300, &len, &info, STEP_NS), SHMQ_ERR_LAPPED, "lapped");
    CHECK(info.missed_bytes >= n * RECORD(200) && info.id == 0 && info.delivery_count == 0);
    CHECK_RC(shmq_recv_info(c, buf, 300, &len, &info, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok a_lagging_subscription_is_lapped: missed %" PRIu64 " bytes\n", missed);
}

static void blocked_member(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, "gone", &c));
    CHECK_OK(shmq_consumer_set_wait(c, SHMQ_WAIT_BLOCK));
    signal_ready(&ready);
    uint8_t buf[16];
    size_t len;
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, NULL, STEP_NS), SHMQ_ERR_CLOSED);
    shmq_consumer_close(c);
}

/* Removing a subscription wakes its blocked member with SHMQ_ERR_CLOSED. */
static void a_removed_subscription_closes_its_members(void) {
    queue = unique_name("gone");
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 12, 256);
    CHECK_OK(shmq_subscription_create(queue, "gone", NULL));
    signal_pipe_init(&ready);
    pid_t child = spawn(blocked_member, NULL);
    await_ready(&ready);
    sleep_ms(50); /* let it go to sleep in the kernel */
    CHECK_OK(shmq_subscription_remove(queue, "gone"));
    wait_child(child);
    shmq_consumer *c;
    CHECK_RC(shmq_consumer_subscribe(queue, "gone", &c), SHMQ_ERR_NOT_FOUND);
    CHECK_OK(shmq_remove(queue));
    close_pipe(&ready);
    printf("ok a_removed_subscription_closes_its_members\n");
}

static void receive_one_and_close(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, "half", &c));
    uint8_t buf[MAX_LEN];
    size_t len;
    shmq_msg_info info;
    CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS));
    CHECK(decode(buf, len) == 0 && info.delivery_count == 1);
    shmq_consumer_close(c);
}

/* A member that closes in the middle of its batch leaves the rest of it to the others:
 * each message still reaches one member once, as a first delivery. */
static void a_closed_members_batch_goes_to_another_member(void) {
    queue = unique_name("half");
    n = 10;
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 13, MAX_LEN);
    CHECK_OK(shmq_subscription_create(queue, "half", NULL));
    wait_child(spawn(produce, NULL));
    wait_child(spawn(receive_one_and_close, NULL));
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, "half", &c));
    uint8_t buf[MAX_LEN];
    size_t len;
    shmq_msg_info info;
    for (uint64_t i = 1; i < n; i++) {
        CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, &info, STEP_NS));
        uint64_t seq = decode(buf, len);
        CHECK_MSG(seq == i, "seq %" PRIu64 ", want %" PRIu64, seq, i);
        /* Nobody had received them: no redelivery. */
        CHECK_MSG(info.delivery_count == 1, "seq %" PRIu64 ": delivery_count %u", seq, info.delivery_count);
    }
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 100 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok a_closed_members_batch_goes_to_another_member\n");
}

int main(int argc, char **argv) {
    check_init();
    const char *group = argc >= 2 ? argv[1] : "all";
    int all = strcmp(group, "all") == 0;
    if (all || strcmp(group, "basic") == 0) {
        subscription_options_are_checked();
        recv_info_on_the_default_subscription();
    }
    if (all || strcmp(group, "protocol") == 0) {
        every_subscription_receives_every_message();
        members_share_the_work(0, 0);
        members_share_the_work(0, 1);
        members_share_the_work(1, 0);
        a_lagging_subscription_is_lapped();
        a_removed_subscription_closes_its_members();
        a_closed_members_batch_goes_to_another_member();
    }
    puts("subscriptions: all passed");
    return 0;
}
