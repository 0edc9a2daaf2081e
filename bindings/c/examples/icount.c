/*
 * A fixed, single-threaded workload for counting the instructions of the C ABI's
 * per-message calls with callgrind (instruction counts repeat where wall-clock time does
 * not): the C twin of the Rust crate's examples/icount.rs.
 *
 *   make -C bindings/c examples
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out \
 *       target/release/c-examples/icount 8 100000
 *   callgrind_annotate --inclusive=yes cg.out | grep -E '=> .*shmq_(send|recv|peek|release) '
 *
 * Divide each function's inclusive count by the message count. One SPSC queue; bursts of
 * 250 messages sent with shmq_send, then drained, so every call takes the path it takes in
 * a stream, and callgrind's serialisation of threads does not matter. RECEIVE says how:
 * `recv` (the default) with shmq_recv into a buffer (what `shmq bench --transport shmq-c`
 * does per message), `peek` with shmq_peek + memcpy + shmq_release (zero-copy, then a
 * copy: what examples/pingpong.c does).
 *
 * Usage: icount [SIZE [MESSAGES [recv|peek]]]   (defaults: 8 bytes, 100000 messages, recv)
 */
#include <shmq.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BURST 250

static void die(const char *what, int rc) {
    fprintf(stderr, "icount: %s: %s (%s)\n", what, shmq_strerror(rc), shmq_last_error());
    exit(1);
}

__attribute__((noinline)) static void send_each(struct shmq_producer *p, const char *m, size_t n, int k) {
    for (int i = 0; i < k; i++) {
        int rc = shmq_send(p, m, n, -1);
        if (rc != SHMQ_OK) die("shmq_send", rc);
    }
}

__attribute__((noinline)) static size_t recv_copy(struct shmq_consumer *c, int k, char *buf, size_t cap) {
    size_t total = 0;
    for (int i = 0; i < k; i++) {
        size_t len;
        int rc = shmq_recv(c, buf, cap, &len, -1);
        if (rc != SHMQ_OK) die("shmq_recv", rc);
        total += len;
    }
    return total;
}

__attribute__((noinline)) static size_t recv_each(struct shmq_consumer *c, int k, char *buf) {
    size_t total = 0;
    for (int i = 0; i < k; i++) {
        const void *d;
        size_t len;
        int rc = shmq_peek(c, &d, &len, -1);
        if (rc != SHMQ_OK) die("shmq_peek", rc);
        memcpy(buf, d, len);
        total += len;
        rc = shmq_release(c);
        if (rc != SHMQ_OK) die("shmq_release", rc);
    }
    return total;
}

int main(int argc, char **argv) {
    long size = argc > 1 ? strtol(argv[1], NULL, 10) : 8;
    long messages = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
    const char *how = argc > 3 ? argv[3] : "recv";
    int peek = strcmp(how, "peek") == 0;
    if (size < 0 || size > 65536 || messages <= 0 || messages % BURST != 0 || (!peek && strcmp(how, "recv") != 0)) {
        fprintf(stderr, "usage: icount [SIZE (0-65536) [MESSAGES (a multiple of %d) [recv|peek]]]\n", BURST);
        return 2;
    }
    char name[64];
    snprintf(name, sizeof name, "c-icount-%d", (int)getpid());
    struct shmq_options o;
    shmq_options_init(&o);
    o.mode = SHMQ_MODE_SPSC;
    /* Room for a whole burst (records are 8-byte headers plus payloads rounded up to 8):
     * one thread sends it all before it receives, and a full ring would wait forever. */
    uint64_t need = (uint64_t)BURST * (8 + (((uint64_t)size + 7) & ~(uint64_t)7));
    while (o.capacity < need) o.capacity *= 2;
    if ((uint64_t)size > o.max_message) o.max_message = (uint32_t)size;
    int rc = shmq_create(name, &o);
    if (rc != SHMQ_OK) die("shmq_create", rc);
    struct shmq_producer *p;
    struct shmq_consumer *c;
    if ((rc = shmq_producer_open(name, &p)) != SHMQ_OK) die("shmq_producer_open", rc);
    if ((rc = shmq_consumer_open(name, &c)) != SHMQ_OK) die("shmq_consumer_open", rc);
    /* Spin: no message ever waits, and the count stays the same from run to run. */
    shmq_producer_set_wait(p, SHMQ_WAIT_SPIN);
    shmq_consumer_set_wait(c, SHMQ_WAIT_SPIN);
    static char msg[65536], buf[65536];
    memset(msg, 'x', sizeof msg);
    size_t total = 0;
    for (long r = 0; r < messages / BURST; r++) {
        send_each(p, msg, (size_t)size, BURST);
        total += peek ? recv_each(c, BURST, buf) : recv_copy(c, BURST, buf, sizeof buf);
    }
    shmq_producer_close(p);
    shmq_consumer_close(c);
    shmq_remove(name);
    if (total != (size_t)size * (size_t)messages || (size > 0 && buf[size - 1] != 'x')) {
        fprintf(stderr, "icount: received %zu bytes, expected %ld\n", total, size * messages);
        return 1;
    }
    printf("%ld messages of %ld bytes sent and received (%s)\n", messages, size, how);
    return 0;
}
