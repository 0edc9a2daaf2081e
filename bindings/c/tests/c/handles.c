/* Handles misused the ways C programs misuse them: one handle from two threads (the
 * re-entry guard answers SHMQ_ERR_BUSY, nothing is duplicated or lost), a handle of the
 * wrong kind or no handle at all, a handle used right after its close, a close while
 * another thread is inside the handle. */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#define HAMMER_COUNT 200000u

typedef struct {
    const char *name;
    int mode;
} stream_args;

/* Child process: sends HAMMER_COUNT messages, each its 4-byte sequence number. */
static void produce_sequence(void *arg) {
    stream_args *a = arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(a->name, &p));
    for (uint32_t i = 0; i < HAMMER_COUNT; i++) CHECK_OK(shmq_send(p, &i, sizeof i, STEP_NS));
    shmq_producer_close(p);
}

typedef struct {
    shmq_consumer *c;
    atomic_uchar *seen;      /* HAMMER_COUNT flags */
    atomic_uint *received;   /* messages returned OK, both threads */
    atomic_uint *duplicates;
    atomic_uint *met;        /* SHMQ_ERR_BUSY answers, both threads */
    unsigned busy;           /* this thread's SHMQ_ERR_BUSY answers */
    unsigned other_errors;
    int last_bad_rc;
} hammer_args;

static void *hammer(void *arg) {
    hammer_args *a = arg;
    int64_t deadline = now_ns() + 4 * STEP_NS;
    /* Until every message is in and the threads have met inside the handle at least once:
     * after the stream, calls on the empty queue go on meeting (a fast build can take the
     * whole stream without the two ever overlapping). */
    while ((atomic_load(a->received) < HAMMER_COUNT || atomic_load(a->met) == 0) && now_ns() < deadline) {
        uint32_t seq;
        size_t len;
        int rc = shmq_recv(a->c, &seq, sizeof seq, &len, 0);
        if (rc == SHMQ_OK) {
            if (len != sizeof seq || seq >= HAMMER_COUNT || atomic_exchange(&a->seen[seq], 1) != 0) {
                atomic_fetch_add(a->duplicates, 1);
            }
            atomic_fetch_add(a->received, 1);
        } else if (rc == SHMQ_ERR_BUSY) {
            a->busy++;
            atomic_fetch_add(a->met, 1);
        } else if (rc != SHMQ_ERR_EMPTY) {
            a->other_errors++;
            a->last_bad_rc = rc;
        }
    }
    return NULL;
}

/* Two threads call shmq_recv on one consumer handle while another process sends: every
 * message is returned OK exactly once, and the guard's SHMQ_ERR_BUSY is seen. */
static void two_threads_on_one_consumer(int mode) {
    stream_args sa = {unique_name("hammer"), mode};
    create_queue(sa.name, mode, 1 << 16, 64);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(sa.name, &c));
    pid_t child = spawn(produce_sequence, &sa);

    atomic_uchar *seen = calloc(HAMMER_COUNT, sizeof *seen);
    CHECK(seen != NULL);
    atomic_uint received = 0, duplicates = 0, met = 0;
    hammer_args a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (hammer_args){c, seen, &received, &duplicates, &met, 0, 0, 0};
        CHECK(pthread_create(&t[i], NULL, hammer, &a[i]) == 0);
    }
    for (int i = 0; i < 2; i++) CHECK(pthread_join(t[i], NULL) == 0);
    wait_child(child);

    unsigned missing = 0;
    for (uint32_t i = 0; i < HAMMER_COUNT; i++) missing += atomic_load(&seen[i]) == 0;
    unsigned busy = a[0].busy + a[1].busy;
    CHECK_MSG(a[0].other_errors + a[1].other_errors == 0, "unexpected errors, e.g. %d (%s)",
              a[0].last_bad_rc ? a[0].last_bad_rc : a[1].last_bad_rc,
              shmq_strerror(a[0].last_bad_rc ? a[0].last_bad_rc : a[1].last_bad_rc));
    CHECK_MSG(duplicates == 0 && missing == 0 && received == HAMMER_COUNT,
              "%u received, %u duplicates, %u missing", (unsigned)received, (unsigned)duplicates,
              missing);
    CHECK_MSG(busy > 0, "the two threads never met inside the handle");
    free(seen);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(sa.name));
    printf("ok two_threads_on_one_consumer %s: %u messages once each, %u busy answers\n",
           mode == SHMQ_MODE_SPSC ? "spsc" : "mpsc", HAMMER_COUNT, busy);
}

typedef struct {
    shmq_consumer *c;
    int rc;
    uint8_t byte;
} blocked_recv;

static void *recv_forever(void *arg) {
    blocked_recv *b = arg;
    size_t len;
    b->rc = shmq_recv(b->c, &b->byte, 1, &len, -1);
    return NULL;
}

/* Waits (bounded) until another thread is inside the consumer: the guard says so. */
static void await_inside(shmq_consumer *c) {
    int64_t deadline = now_ns() + STEP_NS;
    for (;;) {
        uint8_t byte;
        size_t len;
        int rc = shmq_recv(c, &byte, 1, &len, 0);
        if (rc == SHMQ_ERR_BUSY) break;
        CHECK_RC(rc, SHMQ_ERR_EMPTY);
        CHECK_MSG(now_ns() < deadline, "the other thread never entered the handle");
        sleep_ms(1);
    }
    CHECK(strstr(shmq_last_error(), "another thread") != NULL);
}

/* A blocked call holds the handle: a second call, and a close, are refused meanwhile. */
static void a_blocked_call_holds_the_handle(void) {
    const char *name = unique_name("held");
    create_queue(name, SHMQ_MODE_SPSC, 4096, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    blocked_recv b = {c, 1, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, recv_forever, &b) == 0);
    await_inside(c);
    uint32_t max;
    CHECK_RC(shmq_consumer_max_message(c, &max), SHMQ_ERR_BUSY);
    CHECK_RC(shmq_consumer_set_wait(c, SHMQ_WAIT_BLOCK), SHMQ_ERR_BUSY);
    shmq_consumer_close(c); /* refused: the handle stays open */
    CHECK_MSG(strstr(shmq_last_error(), "NOT closed") != NULL, "%s", shmq_last_error());
    CHECK_OK(shmq_send(p, "z", 1, 0));
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_RC(b.rc, SHMQ_OK);
    CHECK(b.byte == 'z');
    CHECK_OK(shmq_consumer_max_message(c, &max)); /* still open, usable again */
    CHECK(max == 64);
    shmq_consumer_close(c);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(name));
    printf("ok a_blocked_call_holds_the_handle\n");
}

/* A handle of the other kind, or memory that is no handle: SHMQ_ERR_INVALID, untouched. */
static void wrong_kind_or_no_handle_is_refused(void) {
    const char *name = unique_name("kind");
    create_queue(name, SHMQ_MODE_MPSC, 4096, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));

    CHECK_RC(shmq_send((shmq_producer *)c, "x", 1, 0), SHMQ_ERR_INVALID);
    CHECK(strstr(shmq_last_error(), "consumer handle was passed") != NULL);
    size_t len;
    uint8_t byte;
    CHECK_RC(shmq_recv((shmq_consumer *)p, &byte, 1, &len, 0), SHMQ_ERR_INVALID);
    CHECK(strstr(shmq_last_error(), "producer handle was passed") != NULL);
    shmq_producer_close((shmq_producer *)c); /* refused: c stays open */
    CHECK(strstr(shmq_last_error(), "consumer handle was passed") != NULL);

    /* Zeroed or stale-looking memory the program owns: 8-byte aligned, readable. */
    uint64_t fake[32];
    memset(fake, 0, sizeof fake);
    CHECK_RC(shmq_send((shmq_producer *)fake, "x", 1, 0), SHMQ_ERR_INVALID);
    CHECK(strstr(shmq_last_error(), "not a producer handle") != NULL);
    memset(fake, 0x5a, sizeof fake);
    CHECK_RC(shmq_release((shmq_consumer *)fake), SHMQ_ERR_INVALID);
    CHECK(strstr(shmq_last_error(), "not a consumer handle") != NULL);
    CHECK_RC(shmq_send((shmq_producer *)((char *)fake + 1), "x", 1, 0), SHMQ_ERR_INVALID);

    /* Nothing reached the queue, and both handles still work. */
    CHECK_RC(shmq_recv(c, &byte, 1, &len, 0), SHMQ_ERR_EMPTY);
    CHECK_OK(shmq_send(p, "y", 1, 0));
    CHECK_OK(shmq_recv(c, &byte, 1, &len, 0));
    CHECK(byte == 'y');
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok wrong_kind_or_no_handle_is_refused\n");
}

/* The documented window: libshmq keeps the last 64 closed handles allocated and poisoned,
 * so a handle used right after its close is refused rather than sending into whatever
 * handle the allocator would have put at that address. */
static void a_handle_used_right_after_close_is_refused(void) {
    const char *a_name = unique_name("closedA");
    const char *b_name = unique_name("closedB");
    create_queue(a_name, SHMQ_MODE_MPSC, 4096, 64);
    create_queue(b_name, SHMQ_MODE_MPSC, 4096, 64);
    shmq_producer *a;
    CHECK_OK(shmq_producer_open(a_name, &a));
    shmq_producer_close(a);
    shmq_producer *b;
    CHECK_OK(shmq_producer_open(b_name, &b));
    CHECK(b != a); /* the closed shell still holds its address */

    CHECK_RC(shmq_send(a, "stale", 5, 0), SHMQ_ERR_INVALID);
    CHECK(strstr(shmq_last_error(), "was closed") != NULL);
    void *slot;
    CHECK_RC(shmq_reserve(a, 8, &slot, 0), SHMQ_ERR_INVALID);
    shmq_producer_close(a); /* a second close is refused too, harmlessly */
    CHECK(strstr(shmq_last_error(), "was closed") != NULL);

    shmq_consumer *rb;
    CHECK_OK(shmq_consumer_open(b_name, &rb));
    uint8_t buf[64];
    size_t len;
    CHECK_RC(shmq_recv(rb, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY); /* nothing went to B */
    shmq_consumer_close(rb);
    shmq_producer_close(b);
    CHECK_OK(shmq_remove(a_name));
    CHECK_OK(shmq_remove(b_name));
    printf("ok a_handle_used_right_after_close_is_refused\n");
}

#define TURNS 20000u

typedef struct {
    shmq_consumer *c;
    pthread_mutex_t *lock;
    uint32_t *next;      /* the sequence number expected next, under `lock` */
    unsigned refused;    /* calls that did not return OK */
} turn_args;

static void *take_turns(void *arg) {
    turn_args *a = arg;
    for (;;) {
        pthread_mutex_lock(a->lock);
        if (*a->next >= TURNS) {
            pthread_mutex_unlock(a->lock);
            return NULL;
        }
        uint32_t seq;
        size_t len;
        int rc = shmq_recv(a->c, &seq, sizeof seq, &len, STEP_NS);
        if (rc != SHMQ_OK || len != sizeof seq || seq != *a->next) a->refused++;
        (*a->next)++;
        pthread_mutex_unlock(a->lock);
    }
}

/* Used correctly, one thread at a time under the program's own lock, a handle that moves
 * between threads at every call is never refused, and delivers in order. */
static void a_handle_passed_between_threads_is_never_refused(void) {
    const char *name = unique_name("turns");
    create_queue(name, SHMQ_MODE_SPSC, 1 << 20, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    for (uint32_t i = 0; i < TURNS; i++) CHECK_OK(shmq_send(p, &i, sizeof i, 0));
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    uint32_t next = 0;
    turn_args a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (turn_args){c, &lock, &next, 0};
        CHECK(pthread_create(&t[i], NULL, take_turns, &a[i]) == 0);
    }
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK_MSG(a[0].refused + a[1].refused + a[2].refused == 0, "%u calls failed",
              a[0].refused + a[1].refused + a[2].refused);
    CHECK(next == TURNS);
    /* And back on this thread, after the others ended. */
    uint32_t seq;
    size_t len;
    CHECK_RC(shmq_recv(c, &seq, sizeof seq, &len, 0), SHMQ_ERR_EMPTY);
    CHECK_OK(shmq_send(p, &seq, sizeof seq, 0));
    CHECK_OK(shmq_recv(c, &seq, sizeof seq, &len, 0));
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok a_handle_passed_between_threads_is_never_refused\n");
}

typedef struct {
    shmq_producer *p;
    shmq_consumer *c;
    uint32_t value;
    int ok;
    pthread_t self;
} reuse_args;

static void *send_and_receive_once(void *arg) {
    reuse_args *a = arg;
    a->self = pthread_self();
    uint32_t got = 0;
    size_t len = 0;
    errno = EDOM;
    a->ok = shmq_send(a->p, &a->value, sizeof a->value, 0) == SHMQ_OK &&
            shmq_recv(a->c, &got, sizeof got, &len, 0) == SHMQ_OK && len == sizeof got && got == a->value &&
            errno == EDOM;
    return NULL;
}

/* The re-entry guard's fast path knows its owner by thread pointer (pthread_self() on glibc),
 * and libshmq finds errno at a fixed offset from it. A thread that ends leaves that identity
 * to the next one created (glibc reuses the stack and thread control block): each such
 * thread must be let in as a newcomer, get its own errno kept, and hand the handles back to
 * this thread afterwards. */
static void threads_that_reuse_an_ended_threads_identity_are_let_in(void) {
    const char *name = unique_name("reuse");
    create_queue(name, SHMQ_MODE_SPSC, 1 << 16, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    pthread_t first = 0;
    int reused = 0;
    for (uint32_t i = 0; i < 20; i++) {
        reuse_args a = {p, c, i, 0, 0};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, send_and_receive_once, &a) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK_MSG(a.ok, "thread %u was refused, lost a message or its errno", i);
        if (i == 0) {
            first = a.self;
        } else if (pthread_equal(a.self, first)) {
            reused++;
        }
        uint32_t got;
        size_t len;
        errno = ERANGE;
        CHECK_OK(shmq_send(p, &i, sizeof i, 0));
        CHECK_OK(shmq_recv(c, &got, sizeof got, &len, 0));
        CHECK(got == i && errno == ERANGE);
    }
    /* Without reuse this test would not test what it says. */
    CHECK_MSG(reused > 0, "no thread reused the first one's identity (not glibc?)");
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok threads_that_reuse_an_ended_threads_identity_are_let_in (%d of 19 reused it)\n", reused);
}

int main(void) {
    check_init();
    wrong_kind_or_no_handle_is_refused();
    a_handle_used_right_after_close_is_refused();
    a_blocked_call_holds_the_handle();
    a_handle_passed_between_threads_is_never_refused();
    threads_that_reuse_an_ended_threads_identity_are_let_in();
    two_threads_on_one_consumer(SHMQ_MODE_SPSC);
    two_threads_on_one_consumer(SHMQ_MODE_MPSC);
    printf("handles: all passed\n");
    return 0;
}
