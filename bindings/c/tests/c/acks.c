/* Explicit acknowledgements from C. `acks DIR` (DIR: a scratch directory on the real disk;
 * each case makes its queue's log directory in it):
 *  - the options of a subscription with SHMQ_ACK_EXPLICIT and their checks (0: the
 *    library's defaults; the dead-letter queue made with the subscription); what a member
 *    may not call; a buffer too small keeps the message with the member;
 *  - a member process killed with SIGKILL holding three unacknowledged messages: another
 *    member gets them again with delivery_count 2 and the same ids (and the two it had
 *    not received with delivery_count 1), and acknowledges them; a nack delivers again at
 *    once, counted; a reject, and a nack at the max_deliveries-th delivery, turn the other
 *    two into dead letters in <queue>.<sub>.dlq, read back with shmq_dead_letter_decode;
 *  - a late ack: a member holds a message past ack_wait_ns, a member process gets it again
 *    (delivery_count 2) and acks it, and the first member's ack gets SHMQ_ERR_ACK_EXPIRED.
 * Members that die or take over are forked children; what they saw comes back through a
 * MAP_SHARED board. Each case removes its queue and its dead-letter queue. */
#include "check.h"

#include <sys/mman.h>

/* `expr` returns `want` and shmq_last_error() then contains `text`. */
#define CHECK_ERR(expr, want, text)                                                    \
    do {                                                                               \
        CHECK_RC(expr, want);                                                          \
        const char *e_ = shmq_last_error();                                            \
        CHECK_MSG(strstr(e_, (text)) != NULL, "last error %s lacks \"%s\"", e_, (text)); \
    } while (0)

#define MAX_LEN 64
#define SUB "work"
#define N_KILL 5
#define HELD 3
/* Room for any dead letter of these queues: a message, a 32-byte header, a reason. */
#define DLQ_BUF (MAX_LEN + 32 + 1024)

static const char *base;
static const char *queue;
static char dlq[160];

/* What a forked member reports to the parent. */
typedef struct {
    uint64_t ids[N_KILL];
    uint64_t seqs[N_KILL];
    uint32_t counts[N_KILL];
    uint32_t in_flight;
    uint32_t acked;
} board;

static board *b;
static signal_pipe ready;

static board *new_board(void) {
    void *m = mmap(NULL, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 0, sizeof(board));
    return (board *)m;
}

/* Message `seq`: [seq:8][filler], 8 to MAX_LEN bytes. */
static size_t make(uint64_t seq, uint8_t *buf) {
    size_t len = 8 + (size_t)((seq * 11) % (MAX_LEN - 7));
    memcpy(buf, &seq, 8);
    for (size_t j = 8; j < len; j++) buf[j] = (uint8_t)(seq * 29 + j);
    return len;
}

/* The seq of a received message, after checking its bytes. */
static uint64_t seq_of(const uint8_t *buf, size_t len) {
    CHECK_MSG(len >= 8, "message of %zu bytes", len);
    uint64_t seq;
    memcpy(&seq, buf, 8);
    CHECK_MSG(seq < 1000, "seq %" PRIu64, seq);
    uint8_t want[MAX_LEN];
    size_t wlen = make(seq, want);
    CHECK_MSG(len == wlen && memcmp(buf, want, len) == 0, "message %" PRIu64 " differs", seq);
    return seq;
}

/* Receives one message (waiting at most STEP_NS) and returns its seq; `*info` says the rest. */
static uint64_t recv_one(shmq_consumer *c, shmq_msg_info *info) {
    uint8_t buf[MAX_LEN];
    size_t len = 0;
    int rc = shmq_recv_info(c, buf, sizeof buf, &len, info, STEP_NS);
    CHECK_MSG(rc == SHMQ_OK, "recv_info: %s: %s", shmq_strerror(rc), shmq_last_error());
    CHECK(info->delivery_count >= 1 && info->reserved == 0 && info->missed_bytes == 0);
    return seq_of(buf, len);
}

static uint32_t in_flight(shmq_consumer *c) {
    uint32_t n = 12345;
    CHECK_OK(shmq_consumer_in_flight(c, &n));
    return n;
}

/* A durable queue `queue` (tag `tag`) with its log in DIR/tag; `dlq` names the
 * dead-letter queue of its subscription SUB. */
static void durable_queue(const char *tag) {
    queue = unique_name(tag);
    char dir[512];
    int n = snprintf(dir, sizeof dir, "%s/%s", base, tag);
    CHECK(n > 0 && (size_t)n < sizeof dir);
    shmq_options o;
    CHECK_OK(shmq_options_init(&o));
    o.capacity = 1 << 16;
    o.max_message = MAX_LEN;
    o.log_dir = dir;
    CHECK_OK(shmq_create(queue, &o));
    n = snprintf(dlq, sizeof dlq, "%s.%s.dlq", queue, SUB);
    CHECK(n > 0 && (size_t)n < sizeof dlq);
}

static void explicit_options(shmq_subscription_options *o, int64_t ack_wait_ns, uint32_t max_deliveries) {
    CHECK_OK(shmq_subscription_options_init(o));
    o->ack = SHMQ_ACK_EXPLICIT;
    o->ack_wait_ns = ack_wait_ns;
    o->max_deliveries = max_deliveries;
}

/* Sends messages first..first+count-1, their ids into ids[]. */
static void send_seqs(uint64_t first, uint64_t count, uint64_t *ids) {
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    for (uint64_t i = 0; i < count; i++) CHECK_OK(shmq_send_id(p, buf, make(first + i, buf), STEP_NS, &ids[i]));
    shmq_producer_close(p);
}

/* The queue and its dead-letter queue go (both existed). */
static void remove_both(void) {
    CHECK_OK(shmq_remove(queue));
    CHECK_OK(shmq_remove(dlq));
}

/* ---- options, and what a member may call ---- */

static void explicit_options_are_checked(void) {
    CHECK(SHMQ_ERR_ACK_EXPIRED == -20);
    CHECK(strstr(shmq_strerror(SHMQ_ERR_ACK_EXPIRED), "ack expired") != NULL);
    CHECK(SHMQ_DEFAULT_ACK_WAIT_NS == 30 * NS_PER_S && SHMQ_DEFAULT_MAX_IN_FLIGHT == 256);
    CHECK(SHMQ_MAX_IN_FLIGHT == 1024 && SHMQ_DEFAULT_MAX_DELIVERIES == 5);
    durable_queue("aopts");
    shmq_subscription_options o;

    /* Refused, before any dead-letter queue is made. */
    explicit_options(&o, -5, 0);
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "ack_wait_ns -5 is negative");
    explicit_options(&o, 999999, 0);
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "ack_wait");
    explicit_options(&o, 0, 0);
    o.max_in_flight = SHMQ_MAX_IN_FLIGHT + 1;
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "max_in_flight");
    explicit_options(&o, 0, 0);
    o.lag_limit = 4096;
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "no lag limit");
    explicit_options(&o, 0, 0);
    CHECK_ERR(shmq_subscription_create(queue, "default", &o), SHMQ_ERR_INVALID, "acknowledges by receiving");
    shmq_consumer *c = NULL;
    CHECK_RC(shmq_consumer_open(dlq, &c), SHMQ_ERR_NOT_FOUND);

    /* Zeros are the library's defaults: the same options as the defaults spelled out. */
    explicit_options(&o, 0, 0);
    CHECK_OK(shmq_subscription_create(queue, SUB, &o));
    explicit_options(&o, SHMQ_DEFAULT_ACK_WAIT_NS, SHMQ_DEFAULT_MAX_DELIVERIES);
    o.max_in_flight = SHMQ_DEFAULT_MAX_IN_FLIGHT;
    CHECK_OK(shmq_subscription_create(queue, SUB, &o));
    explicit_options(&o, 2 * NS_PER_S, 0);
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "exists with acks");
    CHECK_OK(shmq_subscription_options_init(&o));
    CHECK_ERR(shmq_subscription_create(queue, SUB, &o), SHMQ_ERR_INVALID, "exists with acks");
    /* Its dead-letter queue came with it. */
    CHECK_OK(shmq_consumer_open(dlq, &c));
    CHECK(in_flight(c) == 0);
    CHECK_ERR(shmq_ack(c, 0), SHMQ_ERR_INVALID, "explicit acks");
    shmq_consumer_close(c);

    /* A member receives with shmq_recv_info only. */
    CHECK_OK(shmq_consumer_subscribe(queue, SUB, &c));
    uint8_t buf[MAX_LEN];
    size_t len = 99;
    const void *data;
    CHECK_ERR(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_INVALID, "shmq_recv_info");
    CHECK(len == 0);
    CHECK_ERR(shmq_peek(c, &data, &len, 0), SHMQ_ERR_INVALID, "shmq_recv_info");
    CHECK_ERR(shmq_release(c), SHMQ_ERR_INVALID, "no message peeked");
    CHECK_ERR(shmq_ack(c, 12345), SHMQ_ERR_INVALID, "no message with id 12345");
    CHECK_ERR(shmq_nack(NULL, 1, NULL), SHMQ_ERR_INVALID, "NULL consumer");
    CHECK_ERR(shmq_reject(NULL, 1, "x"), SHMQ_ERR_INVALID, "NULL consumer");
    CHECK_ERR(shmq_consumer_in_flight(c, NULL), SHMQ_ERR_INVALID, "NULL out-pointer");
    shmq_msg_info info;
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);

    /* A buffer too small: the size needed; the message is in flight to this member and the
     * next receive hands it out, whatever came meanwhile. */
    uint64_t ids[2];
    send_seqs(0, 2, ids);
    size_t want = make(0, buf);
    memset(&info, 0xee, sizeof info);
    CHECK_ERR(shmq_recv_info(c, buf, 4, &len, &info, STEP_NS), SHMQ_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK(len == want && info.id == 0 && info.delivery_count == 0);
    CHECK(in_flight(c) == 1);
    CHECK_RC(shmq_recv_info(c, buf, 4, &len, &info, 0), SHMQ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == want);
    CHECK(recv_one(c, &info) == 0 && info.id == ids[0] && info.delivery_count == 1);
    CHECK_OK(shmq_ack(c, ids[0]));
    CHECK(recv_one(c, &info) == 1 && info.id == ids[1] && info.delivery_count == 1);
    CHECK(in_flight(c) == 1);
    CHECK_OK(shmq_ack(c, ids[1]));
    CHECK_ERR(shmq_ack(c, ids[1]), SHMQ_ERR_INVALID, "no message with id");
    CHECK(in_flight(c) == 0);
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);

    /* The queue's own consumer acknowledges by receiving. */
    CHECK_OK(shmq_consumer_open(queue, &c));
    CHECK(recv_one(c, &info) == 0);
    CHECK_ERR(shmq_ack(c, info.id), SHMQ_ERR_INVALID, "explicit acks");
    shmq_consumer_close(c);
    remove_both();
    printf("ok explicit_options_are_checked\n");
}

/* ---- a killed member, nacks, rejects, dead letters ---- */

/* Receives HELD messages without acknowledging them, reports them, and waits to be killed. */
static void holder(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, SUB, &c));
    for (int i = 0; i < HELD; i++) {
        shmq_msg_info info;
        b->seqs[i] = recv_one(c, &info);
        CHECK(info.delivery_count == 1);
        b->ids[i] = info.id;
        b->counts[i] = info.delivery_count;
    }
    b->in_flight = in_flight(c);
    signal_ready(&ready);
    for (;;) pause(); /* until killed */
}

/* Receives one dead letter from `c` and checks it is message `seq` with id `id`,
 * `deliveries` deliveries and reason `reason`. */
static void expect_dead_letter(shmq_consumer *c, uint64_t seq, uint64_t id, uint32_t deliveries, const char *reason,
                               int peek) {
    uint8_t buf[DLQ_BUF];
    const void *data = buf;
    size_t len = 0;
    if (peek) {
        /* Decoded in place, in the queue's memory. */
        CHECK_OK(shmq_peek(c, &data, &len, STEP_NS));
    } else {
        CHECK_OK(shmq_recv_info(c, buf, sizeof buf, &len, NULL, STEP_NS));
    }
    shmq_dead_letter_info d;
    memset(&d, 0xee, sizeof d);
    CHECK_OK(shmq_dead_letter_decode(data, len, &d));
    CHECK_MSG(d.id == id && d.deliveries == deliveries, "dead letter id %" PRIu64 " after %u deliveries", d.id,
              d.deliveries);
    CHECK(d.reserved == 0 && d.unix_ns > 0);
    CHECK_MSG(d.reason_len == strlen(reason) && memcmp(d.reason, reason, d.reason_len) == 0, "reason %.*s",
              (int)d.reason_len, d.reason);
    const uint8_t *at = (const uint8_t *)data;
    CHECK((const uint8_t *)d.reason >= at && (const uint8_t *)d.payload + d.payload_len == at + len);
    CHECK(seq_of((const uint8_t *)d.payload, d.payload_len) == seq);
    if (peek) CHECK_OK(shmq_release(c));
}

static void a_killed_members_messages_come_back_and_end_as_acks_or_dead_letters(void) {
    durable_queue("akill");
    shmq_subscription_options o;
    explicit_options(&o, 0, 3);
    CHECK_OK(shmq_subscription_create(queue, SUB, &o));
    uint64_t sent[N_KILL];
    send_seqs(0, N_KILL, sent);
    b = new_board();
    signal_pipe_init(&ready);
    pid_t child = spawn(holder, NULL);
    await_ready(&ready);
    CHECK(b->in_flight == HELD);
    CHECK(kill(child, SIGKILL) == 0);
    int status = wait_child_status(child, STEP_NS);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* The survivor gets all five: the three the dead one held, counted again, and the two
     * it had claimed but not received, for the first time. */
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, SUB, &c));
    uint32_t count[N_KILL] = {0};
    uint64_t got_id[N_KILL] = {0};
    for (int i = 0; i < N_KILL; i++) {
        shmq_msg_info info;
        uint64_t seq = recv_one(c, &info);
        CHECK_MSG(seq < N_KILL && count[seq] == 0, "seq %" PRIu64 " again", seq);
        count[seq] = info.delivery_count;
        got_id[seq] = info.id;
        CHECK_MSG(info.id == sent[seq], "seq %" PRIu64 ": id %" PRIu64 ", sent as %" PRIu64, seq, info.id, sent[seq]);
    }
    /* One member alone receives the stream in order: the dead one held the first three. */
    for (int i = 0; i < HELD; i++) CHECK(b->seqs[i] == (uint64_t)i);
    int redelivered = 0;
    for (uint64_t seq = 0; seq < N_KILL; seq++) {
        int held = 0;
        for (int i = 0; i < HELD; i++) {
            if (b->seqs[i] == seq) {
                held = 1;
                CHECK(b->ids[i] == got_id[seq]);
            }
        }
        CHECK_MSG(count[seq] == (held ? 2u : 1u), "seq %" PRIu64 " (held %d): delivery_count %u", seq, held,
                  count[seq]);
        redelivered += held;
    }
    CHECK(redelivered == HELD);
    CHECK(in_flight(c) == N_KILL);
    shmq_msg_info info;
    uint8_t buf[MAX_LEN];
    size_t len;
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);

    /* What the dead member held: acknowledged by the survivor, done. */
    for (int i = 0; i < HELD; i++) CHECK_OK(shmq_ack(c, b->ids[i]));
    CHECK(in_flight(c) == N_KILL - HELD);
    /* Rejected: a dead letter at once. */
    CHECK_OK(shmq_reject(c, sent[3], "bad amount"));
    /* Nacked: delivered again at once, counted; nacked at its third (max_deliveries)
     * delivery, it goes to the dead-letter queue instead. */
    CHECK_OK(shmq_nack(c, sent[4], "try later"));
    CHECK(in_flight(c) == 0);
    CHECK(recv_one(c, &info) == 4 && info.id == sent[4] && info.delivery_count == 2);
    CHECK_OK(shmq_nack(c, sent[4], NULL));
    CHECK(recv_one(c, &info) == 4 && info.id == sent[4] && info.delivery_count == 3);
    CHECK_OK(shmq_nack(c, sent[4], "poisoned"));
    CHECK_ERR(shmq_ack(c, sent[4]), SHMQ_ERR_INVALID, "no message with id");
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    CHECK(in_flight(c) == 0);
    shmq_consumer_close(c);

    /* The dead letters, in the order they were moved. */
    shmq_consumer *d;
    CHECK_OK(shmq_consumer_open(dlq, &d));
    expect_dead_letter(d, 3, sent[3], 1, "bad amount", 0);
    expect_dead_letter(d, 4, sent[4], 3, "poisoned", 1);
    CHECK_RC(shmq_recv_info(d, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(d);
    /* Anything else is no dead letter. */
    shmq_dead_letter_info dl;
    CHECK_ERR(shmq_dead_letter_decode(buf, make(4, buf), &dl), SHMQ_ERR_CORRUPT, "not a dead letter");
    CHECK(dl.id == 0 && dl.reason == NULL && dl.payload == NULL && dl.payload_len == 0);
    CHECK_ERR(shmq_dead_letter_decode(NULL, 8, &dl), SHMQ_ERR_INVALID, "NULL data");
    CHECK_ERR(shmq_dead_letter_decode(buf, 8, NULL), SHMQ_ERR_INVALID, "NULL out-pointer");

    remove_both();
    munmap(b, sizeof(board));
    close(ready.fd[0]);
    close(ready.fd[1]);
    printf("ok a_killed_members_messages_come_back_and_end_as_acks_or_dead_letters: %d of %d redelivered\n", HELD,
           N_KILL);
}

/* ---- a late ack ---- */

/* Waits for the message another member holds, gets it when that one's ack_wait runs out,
 * and acknowledges it. */
static void taker(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, SUB, &c));
    shmq_msg_info info;
    b->seqs[0] = recv_one(c, &info);
    b->ids[0] = info.id;
    b->counts[0] = info.delivery_count;
    CHECK_OK(shmq_ack(c, info.id));
    b->acked = 1;
    shmq_consumer_close(c);
}

static void a_late_ack_expires(void) {
    const int64_t ack_wait = 300 * NS_PER_MS;
    durable_queue("alate");
    shmq_subscription_options o;
    explicit_options(&o, ack_wait, 0);
    CHECK_OK(shmq_subscription_create(queue, SUB, &o));
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_subscribe(queue, SUB, &c));
    uint64_t id;
    send_seqs(7, 1, &id);
    /* Before the receive: the message's deadline is at least ack_wait after this. */
    int64_t t0 = now_ns();
    shmq_msg_info info;
    CHECK(recv_one(c, &info) == 7 && info.id == id && info.delivery_count == 1);
    CHECK(in_flight(c) == 1);

    b = new_board();
    wait_child(spawn(taker, NULL));
    int64_t waited = now_ns() - t0;
    CHECK(b->acked == 1 && b->seqs[0] == 7 && b->ids[0] == id);
    CHECK_MSG(b->counts[0] == 2, "delivery_count %u", b->counts[0]);
    CHECK_MSG(waited >= ack_wait, "handed over after %" PRId64 " ns, before ack_wait", waited);

    /* Too late: someone else has acknowledged it. */
    char want[64];
    snprintf(want, sizeof want, "ack expired: message %" PRIu64, id);
    CHECK_ERR(shmq_ack(c, id), SHMQ_ERR_ACK_EXPIRED, want);
    CHECK(in_flight(c) == 0);
    CHECK_ERR(shmq_ack(c, id), SHMQ_ERR_INVALID, "no message with id");
    uint8_t buf[MAX_LEN];
    size_t len;
    CHECK_RC(shmq_recv_info(c, buf, sizeof buf, &len, &info, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);
    remove_both();
    munmap(b, sizeof(board));
    printf("ok a_late_ack_expires: handed over after %" PRId64 " ms (ack_wait %" PRId64 " ms)\n", (int64_t)(waited / NS_PER_MS),
           (int64_t)(ack_wait / NS_PER_MS));
}

int main(int argc, char **argv) {
    check_init();
    CHECK_MSG(argc == 2, "usage: acks DIR");
    base = argv[1];
    explicit_options_are_checked();
    a_killed_members_messages_come_back_and_end_as_acks_or_dead_letters();
    a_late_ack_expires();
    printf("acks: all passed\n");
    return 0;
}
