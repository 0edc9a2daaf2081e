/* Why a call failed, from C: shmq_last_error() after several failing calls, per thread;
 * shmq_options sizes from old (the first header's 32 bytes) and newer (simulated)
 * callers; sends refused while a reservation is outstanding. */
#include "check.h"

#include <pthread.h>

/* `expr` returns `want` and shmq_last_error() then contains `text`. */
#define CHECK_ERR(expr, want, text)                                                    \
    do {                                                                               \
        CHECK_RC(expr, want);                                                          \
        const char *e_ = shmq_last_error();                                            \
        CHECK(e_ != NULL);                                                             \
        CHECK_MSG(strstr(e_, (text)) != NULL, "last error %s lacks \"%s\"", e_, (text)); \
    } while (0)

static void last_error_says_why(void) {
    const char *name = unique_name("why");
    create_queue(name, SHMQ_MODE_SPSC, 4096, 512);

    /* An existing queue opened with other options: the reason names what it is. */
    shmq_options o;
    CHECK_OK(shmq_options_init(&o));
    CHECK_ERR(shmq_open_or_create(name, &o), SHMQ_ERR_INVALID, "exists as spsc with capacity 4096");
    CHECK_ERR(shmq_open_or_create(name, &o), SHMQ_ERR_INVALID, "max_message 512");

    /* A success leaves the message as it was (read it only after a failure). */
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK(strstr(shmq_last_error(), "exists as spsc") != NULL);

    shmq_producer *p2 = (shmq_producer *)1;
    CHECK_ERR(shmq_producer_open(name, &p2), SHMQ_ERR_BUSY, "busy");
    CHECK(p2 == NULL);
    CHECK_ERR(shmq_create(name, &o), SHMQ_ERR_EXISTS, name);
    CHECK_ERR(shmq_producer_open("ctest-no-such-queue-anywhere", &p2), SHMQ_ERR_NOT_FOUND,
              "ctest-no-such-queue-anywhere");
    CHECK_ERR(shmq_create("bad/name", &o), SHMQ_ERR_INVALID, "invalid queue name");
    CHECK_ERR(shmq_create(NULL, &o), SHMQ_ERR_INVALID, "NULL");
    CHECK_ERR(shmq_producer_set_wait(p, 42), SHMQ_ERR_INVALID, "wait policy");

    uint8_t big[600] = {0};
    CHECK_ERR(shmq_send(p, big, sizeof big, 0), SHMQ_ERR_TOO_LARGE, "600 bytes exceeds");
    CHECK_ERR(shmq_send(p, NULL, 4, 0), SHMQ_ERR_INVALID, "NULL data");

    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(name, &c));
    uint8_t buf[8];
    size_t len;
    CHECK_ERR(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY, "queue is empty");
    CHECK_ERR(shmq_recv(c, buf, sizeof buf, &len, 1000000), SHMQ_ERR_TIMEOUT, "timed out");
    CHECK_OK(shmq_send(p, big, 100, 0));
    CHECK_ERR(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_BUFFER_TOO_SMALL,
              "buffer of 8 bytes too small for the message of 100 bytes");
    CHECK(len == 100);
    CHECK_ERR(shmq_release(c), SHMQ_ERR_INVALID, "no message peeked");
    CHECK_ERR(shmq_commit(p), SHMQ_ERR_INVALID, "no reservation");

    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok last_error_says_why\n");
}

/* Another thread's failure does not change this thread's message. */
static void *fail_elsewhere(void *arg) {
    (void)arg;
    shmq_producer *p;
    int rc = shmq_producer_open("ctest-other-thread-missing", &p);
    if (rc != SHMQ_ERR_NOT_FOUND) return (void *)1;
    if (strstr(shmq_last_error(), "ctest-other-thread-missing") == NULL) return (void *)2;
    return NULL;
}

static void last_error_is_per_thread(void) {
    shmq_consumer *c;
    CHECK_ERR(shmq_consumer_open("ctest-this-thread-missing", &c), SHMQ_ERR_NOT_FOUND,
              "ctest-this-thread-missing");
    const char *before = shmq_last_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", before);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_elsewhere, NULL) == 0);
    void *res;
    CHECK(pthread_join(t, &res) == 0);
    CHECK_MSG(res == NULL, "the other thread saw the wrong message (%p)", res);
    CHECK(strcmp(shmq_last_error(), copy) == 0);
    printf("ok last_error_is_per_thread\n");
}

/* The first shmq_options (32 bytes, up to `reserved`), as programs compiled against the
 * first header have it, and a newer one with fields this library does not know. */
typedef struct {
    size_t size;
    uint64_t capacity;
    uint32_t max_message;
    int mode;
    uint32_t permissions;
    uint32_t reserved;
} options_v1;

typedef struct {
    shmq_options v2;
    const char *later_dir; /* a later header's field */
    uint64_t later_bytes;
} options_v3;

static void options_size_comes_from_the_caller(void) {
    const char *name = unique_name("opts");
    CHECK(sizeof(options_v1) == 32);

    /* The macro passes sizeof *(o): 72 for this header's struct. */
    shmq_options o;
    memset(&o, 0xab, sizeof o);
    CHECK_OK(shmq_options_init(&o));
    CHECK(o.size == sizeof(shmq_options) && o.size == 72);
    CHECK(o.capacity == SHMQ_DEFAULT_CAPACITY && o.max_message == SHMQ_DEFAULT_MAX_MESSAGE);
    CHECK(o.mode == SHMQ_MODE_MPSC && o.permissions == 0600 && o.reserved == 0);
    CHECK(o.log_dir == NULL && o.fsync == SHMQ_FSYNC_NEVER && o.reserved2 == 0);
    CHECK(o.fsync_interval_ns == 0 && o.max_log_bytes == 0 && o.retain_bytes == 0);

    /* A program built against the first header called the function with its 32-byte
     * struct: exactly 32 bytes are written, and the queue is created (volatile). */
    struct {
        options_v1 v1;
        unsigned char after[40];
    } old;
    memset(&old, 0xab, sizeof old);
    (shmq_options_init)((shmq_options *)(void *)&old.v1);
    CHECK(old.v1.size == 32 && old.v1.reserved == 0 && old.v1.mode == SHMQ_MODE_MPSC);
    for (size_t i = 0; i < sizeof old.after; i++) CHECK_MSG(old.after[i] == 0xab, "byte %zu written", 32 + i);
    old.v1.capacity = 4096;
    old.v1.max_message = 256;
    CHECK_OK(shmq_create(name, (const shmq_options *)(const void *)&old.v1));
    CHECK_OK(shmq_remove(name));
    /* Its macro (the first header's) passed 32: the same. */
    memset(&old, 0xab, sizeof old);
    CHECK_OK(shmq_options_init_sized((shmq_options *)(void *)&old.v1, 32));
    CHECK(old.v1.size == 32 && old.v1.capacity == SHMQ_DEFAULT_CAPACITY && old.after[0] == 0xab);

    /* A newer caller's larger struct: known fields set, the rest zeroed, size = its own. */
    options_v3 v3;
    memset(&v3, 0xab, sizeof v3);
    /* What the macro of a header with these fields would pass. */
    CHECK_OK(shmq_options_init_sized(&v3.v2, sizeof v3));
    CHECK(v3.v2.size == sizeof v3);
    CHECK(v3.v2.capacity == SHMQ_DEFAULT_CAPACITY && v3.v2.reserved == 0 && v3.v2.log_dir == NULL);
    CHECK(v3.later_dir == NULL && v3.later_bytes == 0);
    v3.v2.capacity = 4096;
    v3.v2.max_message = 256;
    /* Trailing fields left zero mean "not used": accepted. */
    CHECK_OK(shmq_create(name, &v3.v2));
    CHECK_OK(shmq_remove(name));
    /* A trailing field this library does not know, set: refused, not silently ignored. */
    v3.later_dir = "/var/lib/q";
    CHECK_ERR(shmq_create(name, &v3.v2), SHMQ_ERR_INVALID, "knows only the first 72 bytes");
    CHECK_ERR(shmq_open_or_create(name, &v3.v2), SHMQ_ERR_INVALID, "newer");
    v3.later_dir = NULL;
    v3.later_bytes = 1;
    CHECK_ERR(shmq_create(name, &v3.v2), SHMQ_ERR_INVALID, "byte 80 of the caller's 88-byte");
    shmq_producer *p;
    CHECK_RC(shmq_producer_open(name, &p), SHMQ_ERR_NOT_FOUND);

    /* Sizes that are no shmq_options: too small, or between the first and this version
     * (they would cut a field in two). */
    CHECK_ERR(shmq_options_init_sized(&o, 24), SHMQ_ERR_INVALID, "size 24");
    CHECK_ERR(shmq_options_init_sized(&o, 40), SHMQ_ERR_INVALID, "size 40");
    CHECK_ERR(shmq_options_init_sized(NULL, 32), SHMQ_ERR_INVALID, "NULL");
    CHECK_OK(shmq_options_init(&o));
    o.size = 16;
    CHECK_ERR(shmq_create(name, &o), SHMQ_ERR_INVALID, "size 16");
    o.size = 48;
    CHECK_ERR(shmq_create(name, &o), SHMQ_ERR_INVALID, "size 48");
    o.size = sizeof o;
    o.reserved = 1;
    CHECK_ERR(shmq_create(name, &o), SHMQ_ERR_INVALID, "reserved");
    o.reserved = 0;
    o.reserved2 = 1;
    CHECK_ERR(shmq_create(name, &o), SHMQ_ERR_INVALID, "reserved2");
    printf("ok options_size_comes_from_the_caller\n");
}

/* While a reservation is outstanding every send and reserve is refused, and nothing is
 * lost: the reservation, committed, arrives, then what was sent after it. */
static void sends_are_refused_while_a_reservation_is_outstanding(int mode) {
    const char *name = unique_name("order");
    create_queue(name, mode, 4096, 256);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));

    void *slot;
    CHECK_OK(shmq_reserve(p, 16, &slot, 0));
    memset(slot, 'r', 16);
    CHECK_ERR(shmq_send(p, "x", 1, 0), SHMQ_ERR_INVALID, "reservation is outstanding");
    CHECK_ERR(shmq_send(p, "x", 1, -1), SHMQ_ERR_INVALID, "reservation is outstanding");
    CHECK_ERR(shmq_send(p, NULL, 0, 0), SHMQ_ERR_INVALID, "reservation is outstanding");
    uint8_t big[300] = {0};
    CHECK_ERR(shmq_send(p, big, sizeof big, 0), SHMQ_ERR_INVALID, "reservation is outstanding");
    void *again = (void *)1;
    CHECK_ERR(shmq_reserve(p, 8, &again, 0), SHMQ_ERR_INVALID, "reservation is outstanding");
    CHECK(again == NULL);
    CHECK_ERR(shmq_commit_len(p, 17), SHMQ_ERR_INVALID, "exceeds the reservation of 16");
    CHECK_OK(shmq_commit(p));
    CHECK_OK(shmq_send(p, "x", 1, 0));

    uint8_t buf[256];
    size_t len;
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, 0));
    CHECK(len == 16 && buf[0] == 'r' && buf[15] == 'r');
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, 0));
    CHECK(len == 1 && buf[0] == 'x');
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);

    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok sends_are_refused_while_a_reservation_is_outstanding %s\n",
           mode == SHMQ_MODE_SPSC ? "spsc" : "mpsc");
}

int main(void) {
    check_init();
    CHECK(strcmp(shmq_last_error(), "") == 0);
    last_error_says_why();
    last_error_is_per_thread();
    options_size_comes_from_the_caller();
    sends_are_refused_while_a_reservation_is_outstanding(SHMQ_MODE_SPSC);
    sends_are_refused_while_a_reservation_is_outstanding(SHMQ_MODE_MPSC);
    printf("errors: all passed\n");
    return 0;
}
