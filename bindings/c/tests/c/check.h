/* A tiny test harness for the C tests of libshmq: checks that report file and line,
 * unique queue names removed at exit, forked children waited for with a bound, and the
 * deterministic message stream shared with tests/support/interop.rs. */
#ifndef SHMQ_CHECK_H
#define SHMQ_CHECK_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL
/* The bound on every wait in these tests: long enough that only a hang reaches it. */
#define STEP_NS (30 * NS_PER_S)

static pid_t check_owner;
static char check_names[64][96];
static int check_name_count;

static inline void check_cleanup(void) {
    if (getpid() != check_owner) return;
    for (int i = 0; i < check_name_count; i++) shmq_remove(check_names[i]);
}

/* Fails the test: a child exits at once with status 1; the parent removes its queues. */
static inline void check_fail(void) {
    fflush(stdout);
    fflush(stderr);
    if (getpid() != check_owner) _exit(1);
    exit(1);
}

static inline void check_init(void) {
    check_owner = getpid();
    atexit(check_cleanup);
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(600); /* last-resort watchdog: SIGALRM ends a hung test */
}

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            check_fail();                                                              \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            check_fail();                                                              \
        }                                                                              \
    } while (0)

/* `expr` returns `want`. */
#define CHECK_RC(expr, want)                                                           \
    do {                                                                               \
        int rc_ = (expr);                                                              \
        int want_ = (want);                                                            \
        if (rc_ != want_) {                                                            \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__,  \
                    __LINE__, #expr, rc_, shmq_strerror(rc_), want_,                   \
                    shmq_strerror(want_));                                             \
            check_fail();                                                              \
        }                                                                              \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, SHMQ_OK)

/* A queue name unique to this process and call; removed at exit (by the parent). */
static inline const char *unique_name(const char *tag) {
    CHECK(check_name_count < 64);
    char *n = check_names[check_name_count++];
    snprintf(n, sizeof check_names[0], "ctest-%s-%d-%d", tag, (int)getpid(), check_name_count);
    return n;
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * NS_PER_MS};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Creates `name` with the given mode, capacity and max_message. */
static inline void create_queue(const char *name, int mode, uint64_t capacity, uint32_t max_message) {
    shmq_options o;
    shmq_options_init(&o);
    o.mode = mode;
    o.capacity = capacity;
    o.max_message = max_message;
    CHECK_OK(shmq_create(name, &o));
}

/* Forks a child that runs `fn(arg)` and exits 0 (a failed check exits 1). */
static inline pid_t spawn(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(600);
        fn(arg);
        _exit(0);
    }
    return pid;
}

/* Waits for the child at most `timeout_ns` (then kills it and fails); returns its raw
 * wait status. */
static inline int wait_child_status(pid_t pid, int64_t timeout_ns) {
    int64_t deadline = now_ns() + timeout_ns;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        CHECK(r == 0);
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "child %d did not finish in time\n", (int)pid);
            check_fail();
        }
        sleep_ms(1);
    }
}

/* Waits for the child (bounded) and checks that it exited 0. */
static inline void wait_child(pid_t pid) {
    int status = wait_child_status(pid, 4 * STEP_NS);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status 0x%x", (int)pid,
              status);
}

/* A pipe to say "ready" from a child to its parent. */
typedef struct {
    int fd[2];
} signal_pipe;

static inline void signal_pipe_init(signal_pipe *s) { CHECK(pipe(s->fd) == 0); }

static inline void signal_ready(signal_pipe *s) {
    char c = 'r';
    CHECK(write(s->fd[1], &c, 1) == 1);
}

/* Waits (bounded) for the child's "ready". */
static inline void await_ready(signal_pipe *s) {
    int64_t deadline = now_ns() + STEP_NS;
    int flags = fcntl(s->fd[0], F_GETFL);
    fcntl(s->fd[0], F_SETFL, flags | O_NONBLOCK);
    for (;;) {
        char c;
        ssize_t n = read(s->fd[0], &c, 1);
        if (n == 1) return;
        CHECK_MSG(now_ns() < deadline, "no ready signal from the child");
        sleep_ms(1);
    }
}

/* splitmix64: the same generator as tests/support/interop.rs. */
static inline uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Message `i` of stream `seed` into `out` (room for max_len bytes); returns its length,
 * in 0..=max_len. */
static inline size_t stream_message(uint64_t seed, uint64_t i, uint64_t max_len, uint8_t *out) {
    size_t len = (size_t)(mix(seed * 1000003ULL + i) % (max_len + 1));
    uint64_t h = mix(seed + i);
    for (size_t j = 0; j < len; j++) out[j] = (uint8_t)((uint8_t)(h >> (8 * (j & 7))) + (uint8_t)(j >> 3));
    return len;
}

/* Overwrites `len` bytes at `offset` of the queue's shared-memory object. */
static inline void poke_segment(const char *name, off_t offset, const void *bytes, size_t len) {
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmq.%s", name);
    int fd = open(path, O_RDWR);
    CHECK_MSG(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(pwrite(fd, bytes, len, offset) == (ssize_t)len);
    close(fd);
}

#endif /* SHMQ_CHECK_H */
