/* pingpong: one-way latency between two processes through two SPSC queues.
 *
 *     pingpong [--wait spin|block|adaptive] [--size BYTES] [--round-trips N] [--warmup N]
 *
 * The parent creates the queues `pingpong-c-<pid>.ping` and `.pong`, then fork()s the echo
 * peer; each process opens its own handles after the fork (handles do not survive it) and
 * pins itself to its own CPU when there are two or more. The parent writes a message
 * (sequence number + filler) into `ping` with shmq_reserve/shmq_commit, waits for the peer
 * to copy it back through `pong`, and checks it. One-way latency = round trip / 2; the
 * percentiles come from all round trips after the warmup.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

#define SECOND 1000000000LL

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SECOND + ts.tv_nsec;
}

static void pin(int cpu) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % cpus, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void fill(uint8_t *buf, size_t size, uint64_t seq) {
    memcpy(buf, &seq, 8);
    for (size_t i = 8; i < size; i++) buf[i] = (uint8_t)(seq + i);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "pingpong: %s: %s (%s)\n", what, shmq_strerror(rc), shmq_last_error());
    return 1;
}

/* The echo peer: copies every message of `ping` back into `pong` until `ping` is removed,
 * receiving into a buffer and sending from it, as examples/pingpong.rs does, so that the two
 * examples compare the C and the Rust API like for like. (Sending straight from the ring,
 * shmq_peek + shmq_send + shmq_release, is one call more per message; at 64 B it measured
 * about 17 ns slower one-way than this.) */
static int echo(const char *ping, const char *pong, int wait, size_t max_message) {
    pin(1);
    char *buf = malloc(max_message);
    if (!buf) {
        perror("echo: malloc");
        return 1;
    }
    shmq_consumer *rx;
    shmq_producer *tx;
    int rc = shmq_consumer_open(ping, &rx);
    if (rc) return fail("echo: consumer_open", rc);
    rc = shmq_producer_open(pong, &tx);
    if (rc) return fail("echo: producer_open", rc);
    shmq_consumer_set_wait(rx, wait);
    shmq_producer_set_wait(tx, wait);
    for (;;) {
        size_t len;
        rc = shmq_recv(rx, buf, max_message, &len, 10 * SECOND);
        if (rc == SHMQ_ERR_CLOSED) break;
        if (rc) return fail("echo: recv", rc);
        rc = shmq_send(tx, buf, len, 10 * SECOND);
        if (rc) return fail("echo: send", rc);
    }
    shmq_producer_close(tx);
    shmq_consumer_close(rx);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int wait = SHMQ_WAIT_SPIN;
    const char *wait_name = "spin";
    size_t size = 64;
    long round_trips = 200000, warmup = 20000;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--wait") == 0 && v) {
            wait_name = v;
            wait = !strcmp(v, "spin") ? SHMQ_WAIT_SPIN : !strcmp(v, "block") ? SHMQ_WAIT_BLOCK
                 : !strcmp(v, "adaptive") ? SHMQ_WAIT_ADAPTIVE : 0;
        } else if (strcmp(argv[i], "--size") == 0 && v) {
            size = (size_t)strtoul(v, NULL, 10);
        } else if (strcmp(argv[i], "--round-trips") == 0 && v) {
            round_trips = strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--warmup") == 0 && v) {
            warmup = strtol(v, NULL, 10);
        } else {
            wait = 0;
        }
        i++;
        if (wait == 0 || size < 8 || round_trips < 1 || warmup < 0) {
            fprintf(stderr, "usage: pingpong [--wait spin|block|adaptive] [--size BYTES >= 8] "
                            "[--round-trips N] [--warmup N]\n");
            return 2;
        }
    }

    char ping[64], pong[64];
    snprintf(ping, sizeof ping, "pingpong-c-%d.ping", (int)getpid());
    snprintf(pong, sizeof pong, "pingpong-c-%d.pong", (int)getpid());
    shmq_options o;
    shmq_options_init(&o);
    o.mode = SHMQ_MODE_SPSC;
    o.max_message = size > 64 ? (uint32_t)size : 64;
    int rc = shmq_create(ping, &o);
    if (rc) return fail("create ping", rc);
    rc = shmq_create(pong, &o);
    if (rc) {
        shmq_remove(ping);
        return fail("create pong", rc);
    }

    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        shmq_remove(ping);
        shmq_remove(pong);
        return 1;
    }
    if (child == 0) _exit(echo(ping, pong, wait, o.max_message));

    int status = 1;
    shmq_producer *tx = NULL;
    shmq_consumer *rx = NULL;
    uint8_t *out = malloc(size), *expect = malloc(size);
    int64_t *samples = malloc(sizeof(int64_t) * (size_t)round_trips);
    if (!out || !expect || !samples) goto done;
    pin(0);
    if ((rc = shmq_producer_open(ping, &tx)) || (rc = shmq_consumer_open(pong, &rx))) {
        fail("open", rc);
        goto done;
    }
    shmq_producer_set_wait(tx, wait);
    shmq_consumer_set_wait(rx, wait);

    int64_t started = now_ns();
    for (long seq = 0; seq < warmup + round_trips; seq++) {
        int64_t t0 = now_ns();
        void *slot;
        if ((rc = shmq_reserve(tx, size, &slot, 10 * SECOND))) {
            fail("reserve", rc);
            goto done;
        }
        fill(slot, size, (uint64_t)seq);
        shmq_commit(tx);
        size_t len;
        if ((rc = shmq_recv(rx, out, size, &len, 10 * SECOND))) {
            fail("recv", rc);
            goto done;
        }
        int64_t rtt = now_ns() - t0;
        fill(expect, size, (uint64_t)seq);
        if (len != size || memcmp(out, expect, size) != 0) {
            fprintf(stderr, "pingpong: echo of message %ld differs\n", seq);
            goto done;
        }
        if (seq >= warmup) samples[seq - warmup] = rtt / 2;
    }
    double total = (double)(now_ns() - started) / 1e9;

    qsort(samples, (size_t)round_trips, sizeof samples[0], cmp_i64);
    printf("shmq C ping-pong, %zu B, wait %s, %ld round trips in %.2f s (one-way latency = round trip / 2)\n",
           size, wait_name, round_trips, total);
    const char *labels[] = {"p50", "p90", "p99", "p99.9"};
    double quantiles[] = {0.50, 0.90, 0.99, 0.999};
    for (int i = 0; i < 4; i++) {
        long at = (long)(quantiles[i] * (double)round_trips);
        if (at >= round_trips) at = round_trips - 1;
        printf("  %6s: %9lld ns\n", labels[i], (long long)samples[at]);
    }
    printf("  %6s: %9lld ns\n", "max", (long long)samples[round_trips - 1]);
    status = 0;

done:
    shmq_producer_close(tx);
    shmq_remove(ping); /* the echo peer sees SHMQ_ERR_CLOSED and exits */
    shmq_remove(pong);
    if (status != 0) kill(child, SIGKILL);
    int child_status;
    waitpid(child, &child_status, 0);
    if (status == 0 && !(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)) {
        fprintf(stderr, "pingpong: the echo peer failed\n");
        status = 1;
    }
    shmq_consumer_close(rx);
    free(out);
    free(expect);
    free(samples);
    return status;
}
