/* Queue operations in one process, on SPSC and MPSC queues: fill until full then drain in
 * order, timeouts, too-large messages, a too-small buffer, the zero-copy pairs, zero-length
 * messages, and misuse (NULL handles and buffers, calls out of order). */
#include "check.h"

#define CAP (1 << 12)
#define MAX 512

static const char *mode_name(int mode) { return mode == SHMQ_MODE_SPSC ? "spsc" : "mpsc"; }

typedef struct {
    const char *name;
    shmq_producer *p;
    shmq_consumer *c;
} fixture;

static fixture open_fixture(const char *tag, int mode) {
    fixture f;
    f.name = unique_name(tag);
    create_queue(f.name, mode, CAP, MAX);
    CHECK_OK(shmq_producer_open(f.name, &f.p));
    CHECK_OK(shmq_consumer_open(f.name, &f.c));
    return f;
}

static void close_fixture(fixture *f) {
    shmq_producer_close(f->p);
    shmq_consumer_close(f->c);
    CHECK_OK(shmq_remove(f->name));
}

/* Message i: [i as 4 bytes][filler], 4 + (i * 37) % 200 bytes. */
static size_t make(uint32_t i, uint8_t *buf) {
    size_t len = 4 + (i * 37u) % 200u;
    memcpy(buf, &i, 4);
    for (size_t j = 4; j < len; j++) buf[j] = (uint8_t)(i + j);
    return len;
}

static void check_message(uint32_t i, const uint8_t *got, size_t len) {
    uint8_t want[MAX];
    size_t wlen = make(i, want);
    CHECK_MSG(len == wlen && memcmp(got, want, len) == 0, "message %u: %zu bytes, want %zu", i, len, wlen);
}

static void fill_until_full_then_drain_in_order(int mode) {
    fixture f = open_fixture("fill", mode);
    uint8_t buf[MAX];
    uint32_t sent = 0;
    for (;;) {
        size_t len = make(sent, buf);
        int rc = shmq_send(f.p, buf, len, 0);
        if (rc == SHMQ_ERR_FULL) break;
        CHECK_OK(rc);
        sent++;
        CHECK(sent < CAP); /* every message takes at least 16 bytes */
    }
    CHECK(sent > 10);
    /* Still full: every way of trying fails the same, and a timeout waits its time. */
    CHECK_RC(shmq_send(f.p, buf, 100, 0), SHMQ_ERR_FULL);
    void *slot = (void *)1;
    CHECK_RC(shmq_reserve(f.p, 100, &slot, 0), SHMQ_ERR_FULL);
    CHECK(slot == NULL);
    int64_t t0 = now_ns();
    CHECK_RC(shmq_send(f.p, buf, 100, 20 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * NS_PER_MS);
    t0 = now_ns();
    CHECK_RC(shmq_reserve(f.p, 100, &slot, 20 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * NS_PER_MS);

    for (uint32_t i = 0; i < sent; i++) {
        size_t len = 0;
        CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
        check_message(i, buf, len);
    }
    size_t len = 99;
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    CHECK(len == 0);
    const void *data = (const void *)1;
    CHECK_RC(shmq_peek(f.c, &data, &len, 0), SHMQ_ERR_EMPTY);
    CHECK(data == NULL && len == 0);
    t0 = now_ns();
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 20 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * NS_PER_MS);
    t0 = now_ns();
    CHECK_RC(shmq_peek(f.c, &data, &len, 20 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * NS_PER_MS);

    /* Space is back: the ring wraps and keeps order, several laps over. */
    for (uint32_t i = 0; i < 5 * sent; i++) {
        size_t n = make(i, buf);
        CHECK_OK(shmq_send(f.p, buf, n, -1));
        CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, -1));
        check_message(i, buf, len);
    }
    close_fixture(&f);
    printf("ok fill_until_full_then_drain_in_order %s (%u messages fit)\n", mode_name(mode), sent);
}

static void too_large_messages_are_refused(int mode) {
    fixture f = open_fixture("large", mode);
    static uint8_t buf[MAX + 1];
    uint32_t max;
    CHECK_OK(shmq_consumer_max_message(f.c, &max));
    CHECK(max == MAX);
    CHECK_RC(shmq_send(f.p, buf, MAX + 1, 0), SHMQ_ERR_TOO_LARGE);
    CHECK_RC(shmq_send(f.p, buf, MAX + 1, -1), SHMQ_ERR_TOO_LARGE);
    CHECK_RC(shmq_send(f.p, buf, (size_t)-1, 0), SHMQ_ERR_TOO_LARGE);
    void *slot;
    CHECK_RC(shmq_reserve(f.p, MAX + 1, &slot, 0), SHMQ_ERR_TOO_LARGE);
    CHECK_RC(shmq_reserve(f.p, SIZE_MAX, &slot, -1), SHMQ_ERR_TOO_LARGE);
    memset(buf, 7, MAX);
    CHECK_OK(shmq_send(f.p, buf, MAX, 0));
    size_t len;
    static uint8_t out[MAX];
    CHECK_OK(shmq_recv(f.c, out, sizeof out, &len, 0));
    CHECK(len == MAX && memcmp(out, buf, MAX) == 0);
    close_fixture(&f);
    printf("ok too_large_messages_are_refused %s\n", mode_name(mode));
}

static void too_small_buffer_leaves_the_message(int mode) {
    fixture f = open_fixture("small", mode);
    uint8_t msg[100];
    for (int i = 0; i < 100; i++) msg[i] = (uint8_t)i;
    CHECK_OK(shmq_send(f.p, msg, sizeof msg, 0));
    CHECK_OK(shmq_send(f.p, "next", 4, 0));
    uint8_t buf[100];
    size_t len = 0;
    CHECK_RC(shmq_recv(f.c, buf, 10, &len, 0), SHMQ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 100);
    CHECK_RC(shmq_recv(f.c, buf, 99, &len, -1), SHMQ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 100);
    len = 0;
    CHECK_RC(shmq_recv(f.c, NULL, 0, &len, 0), SHMQ_ERR_BUFFER_TOO_SMALL); /* size query */
    CHECK(len == 100);
    CHECK_OK(shmq_recv(f.c, buf, len, &len, 0));
    CHECK(len == 100 && memcmp(buf, msg, 100) == 0);
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 4 && memcmp(buf, "next", 4) == 0);
    close_fixture(&f);
    printf("ok too_small_buffer_leaves_the_message %s\n", mode_name(mode));
}

static void reserve_commit_and_abort(int mode) {
    fixture f = open_fixture("zc-write", mode);
    void *slot = NULL;
    uint8_t buf[MAX];
    size_t len;

    /* reserve + commit: all of it. */
    CHECK_OK(shmq_reserve(f.p, 64, &slot, 0));
    CHECK(slot != NULL);
    memset(slot, 'a', 64);
    CHECK_OK(shmq_commit(f.p));
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 64 && buf[0] == 'a' && buf[63] == 'a');

    /* reserve + commit_len: fewer bytes; more than reserved is refused and keeps it. */
    CHECK_OK(shmq_reserve(f.p, 64, &slot, -1));
    memcpy(slot, "0123456789", 10);
    CHECK_RC(shmq_commit_len(f.p, 65), SHMQ_ERR_INVALID);
    CHECK_OK(shmq_commit_len(f.p, 10));
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);

    /* While reserved: no other reservation or send; the consumer sees nothing yet. */
    CHECK_OK(shmq_reserve(f.p, 32, &slot, 0));
    memset(slot, 'z', 32);
    void *again = (void *)1;
    CHECK_RC(shmq_reserve(f.p, 8, &again, 0), SHMQ_ERR_INVALID);
    CHECK(again == NULL);
    CHECK_RC(shmq_send(f.p, "x", 1, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    /* abort: nothing arrives; then the producer works again. */
    CHECK_OK(shmq_abort(f.p));
    CHECK_RC(shmq_abort(f.p), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_commit(f.p), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    CHECK_OK(shmq_send(f.p, "after", 5, 0));
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);

    /* Many aborted and committed reservations, interleaved, over several laps. */
    for (uint32_t i = 0; i < 2000; i++) {
        size_t n = make(i, buf);
        CHECK_OK(shmq_reserve(f.p, n + 50, &slot, -1));
        if (i % 3 == 0) {
            CHECK_OK(shmq_abort(f.p));
            continue;
        }
        memcpy(slot, buf, n);
        CHECK_OK(shmq_commit_len(f.p, n));
        uint8_t got[MAX];
        CHECK_OK(shmq_recv(f.c, got, sizeof got, &len, 0));
        check_message(i, got, len);
    }
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);

    /* Closing a producer with a reservation outstanding aborts it: the queue flows on. */
    CHECK_OK(shmq_reserve(f.p, 16, &slot, 0));
    shmq_producer_close(f.p);
    CHECK_OK(shmq_producer_open(f.name, &f.p));
    CHECK_OK(shmq_send(f.p, "fresh", 5, 0));
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 5 && memcmp(buf, "fresh", 5) == 0);
    close_fixture(&f);
    printf("ok reserve_commit_and_abort %s\n", mode_name(mode));
}

static void peek_and_release(int mode) {
    fixture f = open_fixture("zc-read", mode);
    CHECK_OK(shmq_send(f.p, "first", 5, 0));
    CHECK_OK(shmq_send(f.p, "second", 6, 0));
    CHECK_OK(shmq_send(f.p, "third", 5, 0));
    const void *d1, *d2;
    size_t l1, l2;
    CHECK_OK(shmq_peek(f.c, &d1, &l1, 0));
    CHECK(l1 == 5 && memcmp(d1, "first", 5) == 0);
    CHECK_OK(shmq_peek(f.c, &d2, &l2, -1)); /* the same message again */
    CHECK(d2 == d1 && l2 == l1);
    CHECK_OK(shmq_release(f.c));
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID); /* nothing peeked */
    CHECK_OK(shmq_peek(f.c, &d1, &l1, 0));
    CHECK(l1 == 6 && memcmp(d1, "second", 6) == 0);
    /* recv while peeked takes the peeked message and ends the peek. */
    char buf[16];
    size_t len;
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 6 && memcmp(buf, "second", 6) == 0);
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID);
    /* A peeked message not released stays for the next consumer. */
    CHECK_OK(shmq_peek(f.c, &d1, &l1, 0));
    CHECK(l1 == 5 && memcmp(d1, "third", 5) == 0);
    shmq_consumer_close(f.c);
    CHECK_OK(shmq_consumer_open(f.name, &f.c));
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID); /* a new handle has peeked nothing */
    CHECK_OK(shmq_peek(f.c, &d1, &l1, 0));
    CHECK(l1 == 5 && memcmp(d1, "third", 5) == 0);
    CHECK_OK(shmq_release(f.c));
    CHECK_RC(shmq_peek(f.c, &d1, &l1, 0), SHMQ_ERR_EMPTY);
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID); /* a failed peek peeks nothing */

    /* Peek/release over several laps, message content checked in place. */
    uint8_t msg[MAX];
    for (uint32_t i = 0; i < 3000; i++) {
        size_t n = make(i, msg);
        CHECK_OK(shmq_send(f.p, msg, n, -1));
        CHECK_OK(shmq_peek(f.c, &d1, &l1, -1));
        check_message(i, d1, l1);
        CHECK_OK(shmq_release(f.c));
    }
    close_fixture(&f);
    printf("ok peek_and_release %s\n", mode_name(mode));
}

static void zero_length_messages_are_valid(int mode) {
    fixture f = open_fixture("empty-msg", mode);
    CHECK_OK(shmq_send(f.p, NULL, 0, 0));
    CHECK_OK(shmq_send(f.p, "ignored", 0, 0));
    void *slot = NULL;
    CHECK_OK(shmq_reserve(f.p, 0, &slot, 0));
    CHECK_OK(shmq_commit(f.p));
    CHECK_OK(shmq_reserve(f.p, 8, &slot, 0));
    CHECK_OK(shmq_commit_len(f.p, 0));
    CHECK_OK(shmq_send(f.p, "x", 1, 0));
    CHECK_OK(shmq_send(f.p, NULL, 0, -1));

    char buf[8];
    size_t len = 99;
    CHECK_OK(shmq_recv(f.c, NULL, 0, &len, 0));
    CHECK(len == 0);
    len = 99;
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 0);
    const void *d = NULL;
    len = 99;
    CHECK_OK(shmq_peek(f.c, &d, &len, 0));
    CHECK(len == 0);
    CHECK_OK(shmq_release(f.c));
    CHECK_OK(shmq_recv(f.c, NULL, 0, &len, 0));
    CHECK(len == 0);
    CHECK_RC(shmq_recv(f.c, NULL, 0, &len, 0), SHMQ_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 1);
    CHECK_OK(shmq_recv(f.c, buf, 1, &len, 0));
    CHECK(len == 1 && buf[0] == 'x');
    CHECK_OK(shmq_recv(f.c, buf, 0, &len, -1));
    CHECK(len == 0);
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);

    /* Only empty messages, until full and back, several laps. */
    uint32_t n = 0;
    while (shmq_send(f.p, NULL, 0, 0) == SHMQ_OK) n++;
    CHECK_MSG(n >= CAP / 16 - 1 && n <= CAP / 16, "%u empty messages fit", n); /* 16-byte header each; the wrap may take one */
    for (uint32_t i = 0; i < n; i++) {
        CHECK_OK(shmq_recv(f.c, NULL, 0, &len, 0));
        CHECK(len == 0);
    }
    CHECK_RC(shmq_recv(f.c, NULL, 0, &len, 0), SHMQ_ERR_EMPTY);
    close_fixture(&f);
    printf("ok zero_length_messages_are_valid %s\n", mode_name(mode));
}

static void misuse_is_refused_and_harmless(int mode) {
    fixture f = open_fixture("misuse", mode);
    char buf[16];
    size_t len;
    const void *d;
    void *slot;
    uint32_t max;

    /* NULL handles. */
    CHECK_RC(shmq_send(NULL, "x", 1, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_reserve(NULL, 1, &slot, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_commit(NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_commit_len(NULL, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_abort(NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_recv(NULL, buf, sizeof buf, &len, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_peek(NULL, &d, &len, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_release(NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_producer_max_message(NULL, &max), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_consumer_max_message(NULL, &max), SHMQ_ERR_INVALID);
    shmq_producer_close(NULL);
    shmq_consumer_close(NULL);
    /* NULL out-pointers and buffers with non-zero lengths. */
    CHECK_RC(shmq_producer_open(f.name, NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_consumer_open(f.name, NULL), SHMQ_ERR_INVALID);
    shmq_producer_close(f.p);
    CHECK_RC(shmq_producer_open(NULL, &f.p), SHMQ_ERR_INVALID);
    CHECK(f.p == NULL);
    CHECK_OK(shmq_producer_open(f.name, &f.p));
    CHECK_RC(shmq_send(f.p, NULL, 1, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_send(f.p, NULL, 1, -1), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_reserve(f.p, 8, NULL, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_recv(f.c, NULL, 1, &len, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, NULL, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_peek(f.c, NULL, &len, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_peek(f.c, &d, NULL, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_producer_max_message(f.p, NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_consumer_max_message(f.c, NULL), SHMQ_ERR_INVALID);
    /* Out of order. */
    CHECK_RC(shmq_commit(f.p), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_commit_len(f.p, 0), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_abort(f.p), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID);
    CHECK_OK(shmq_send(f.p, "m", 1, 0));
    CHECK_RC(shmq_release(f.c), SHMQ_ERR_INVALID); /* a message is there, but not peeked */
    /* None of it disturbed the queue. */
    CHECK_OK(shmq_send(f.p, "ok", 2, 0));
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 1 && buf[0] == 'm');
    CHECK_OK(shmq_recv(f.c, buf, sizeof buf, &len, 0));
    CHECK(len == 2 && memcmp(buf, "ok", 2) == 0);
    CHECK_RC(shmq_recv(f.c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    close_fixture(&f);
    printf("ok misuse_is_refused_and_harmless %s\n", mode_name(mode));
}

int main(void) {
    check_init();
    int modes[] = {SHMQ_MODE_SPSC, SHMQ_MODE_MPSC};
    for (int m = 0; m < 2; m++) {
        fill_until_full_then_drain_in_order(modes[m]);
        too_large_messages_are_refused(modes[m]);
        too_small_buffer_leaves_the_message(modes[m]);
        reserve_commit_and_abort(modes[m]);
        peek_and_release(modes[m]);
        zero_length_messages_are_valid(modes[m]);
        misuse_is_refused_and_harmless(modes[m]);
    }
    puts("queue_ops: all passed");
    return 0;
}
