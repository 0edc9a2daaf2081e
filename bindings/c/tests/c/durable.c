/* Durable queues from C. `durable DIR` (DIR: a scratch directory on the real disk; each
 * case makes its log directory in it):
 *  - the durable fields of shmq_options and their checks; ids, shmq_wait_durable and
 *    shmq_send_nowait on a volatile queue (nothing to wait for);
 *  - a queue with SHMQ_FSYNC_ALWAYS: a producer process sends with shmq_send_id (ids
 *    increase; each message is readable by the consumer process the moment the send
 *    returned, since consumers see only synced messages), then with shmq_send_nowait (not
 *    readable: nothing synced them) until it calls shmq_wait_durable (now readable), and
 *    commits a reservation with shmq_commit_id; the log directory is on disk, owner-only;
 *  - a restart: the shared-memory object removed (shmq_remove), the queue created again
 *    with the same log_dir; the default consumer receives, from the log, what it had not
 *    received, with the same ids, and new ids continue above the old ones.
 * The producer is a forked child; ids come back through a MAP_SHARED board. */
#include "check.h"

#include <dirent.h>
#include <sys/mman.h>

/* `expr` returns `want` and shmq_last_error() then contains `text`. */
#define CHECK_ERR(expr, want, text)                                                    \
    do {                                                                               \
        CHECK_RC(expr, want);                                                          \
        const char *e_ = shmq_last_error();                                            \
        CHECK_MSG(strstr(e_, (text)) != NULL, "last error %s lacks \"%s\"", e_, (text)); \
    } while (0)

#define MAX_LEN 64
#define N_SYNCED 100
#define N_NOWAIT 50
#define N_TOTAL (N_SYNCED + N_NOWAIT + 1)
#define N_RESTART 10
#define RECEIVED_BEFORE 4

static const char *base;

/* Message `seq`: [seq:8][filler], 8 to MAX_LEN bytes. */
static size_t make(uint64_t seq, uint8_t *buf) {
    size_t len = 8 + (size_t)(seq % (MAX_LEN - 7));
    memcpy(buf, &seq, 8);
    for (size_t j = 8; j < len; j++) buf[j] = (uint8_t)(seq * 13 + j);
    return len;
}

/* Receives one message within `timeout_ns` and checks it is message `seq` with id `id`. */
static void expect(shmq_consumer *c, uint64_t seq, uint64_t id, int64_t timeout_ns) {
    uint8_t buf[MAX_LEN], want[MAX_LEN];
    size_t len = 0;
    shmq_msg_info info;
    int rc = shmq_recv_info(c, buf, sizeof buf, &len, &info, timeout_ns);
    CHECK_MSG(rc == SHMQ_OK, "message %" PRIu64 " (id %" PRIu64 "): %s: %s", seq, id, shmq_strerror(rc),
              shmq_last_error());
    size_t wlen = make(seq, want);
    CHECK_MSG(len == wlen && memcmp(buf, want, len) == 0, "expected message %" PRIu64, seq);
    CHECK_MSG(info.id == id, "message %" PRIu64 ": id %" PRIu64 ", send said %" PRIu64, seq, info.id, id);
}

static void expect_nothing(shmq_consumer *c, int64_t timeout_ns) {
    uint8_t buf[MAX_LEN];
    size_t len = 0;
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, timeout_ns), timeout_ns == 0 ? SHMQ_ERR_EMPTY : SHMQ_ERR_TIMEOUT);
}

static void durable_options(shmq_options *o, const char *dir, int fsync) {
    CHECK_OK(shmq_options_init(o));
    o->capacity = 1 << 16;
    o->max_message = MAX_LEN;
    o->log_dir = dir;
    o->fsync = fsync;
}

static void log_dir(char *out, size_t cap, const char *tag) {
    int n = snprintf(out, cap, "%s/%s", base, tag);
    CHECK(n > 0 && (size_t)n < cap);
}

/* ---- options ---- */

static void durable_options_are_checked(void) {
    const char *q = unique_name("dopts");
    char dir[512];
    log_dir(dir, sizeof dir, "refused");
    shmq_options o;

#define REFUSED(stmt, text)                                                            \
    do {                                                                               \
        durable_options(&o, dir, SHMQ_FSYNC_NEVER);                                    \
        stmt;                                                                          \
        CHECK_ERR(shmq_create(q, &o), SHMQ_ERR_INVALID, text);                         \
        CHECK_ERR(shmq_open_or_create(q, &o), SHMQ_ERR_INVALID, text);                 \
    } while (0)
    REFUSED((o.log_dir = NULL, o.fsync = SHMQ_FSYNC_ALWAYS), "fsync is set but log_dir is NULL");
    REFUSED((o.log_dir = NULL, o.max_log_bytes = 1 << 20), "max_log_bytes is set but log_dir is NULL");
    REFUSED((o.log_dir = NULL, o.retain_bytes = 1), "retain_bytes is set but log_dir is NULL");
    REFUSED(o.log_dir = "", "log_dir is empty");
    REFUSED(o.fsync = SHMQ_FSYNC_INTERVAL, "needs fsync_interval_ns");
    REFUSED((o.fsync = SHMQ_FSYNC_ALWAYS, o.fsync_interval_ns = 1000), "applies only to SHMQ_FSYNC_INTERVAL");
    REFUSED(o.fsync = 7, "fsync 7");
    REFUSED(o.reserved2 = 1, "reserved2");
#undef REFUSED
    /* Nothing was created: no queue, no directory. */
    CHECK_RC(shmq_remove(q), SHMQ_ERR_NOT_FOUND);
    struct stat st;
    CHECK(stat(dir, &st) != 0 && errno == ENOENT);

    /* A volatile queue: ids increase, there is nothing to wait for, no-wait sends are sends. */
    create_queue(q, SHMQ_MODE_SPSC, 1 << 12, MAX_LEN);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(q, &p));
    CHECK_OK(shmq_consumer_open(q, &c));
    uint8_t buf[MAX_LEN];
    uint64_t ids[3];
    CHECK_OK(shmq_send_id(p, buf, make(0, buf), 0, &ids[0]));
    CHECK_OK(shmq_send_nowait(p, buf, make(1, buf), 0, &ids[1]));
    CHECK_OK(shmq_wait_durable(p, ids[1], 0));
    void *space;
    CHECK_OK(shmq_reserve(p, MAX_LEN, &space, 0));
    size_t len = make(2, buf);
    memcpy(space, buf, len);
    CHECK_OK(shmq_commit_len_id(p, len, &ids[2]));
    CHECK(ids[0] < ids[1] && ids[1] < ids[2]);
    CHECK_OK(shmq_send_id(p, buf, make(3, buf), 0, NULL)); /* the id is optional */
    for (uint64_t i = 0; i < 3; i++) expect(c, i, ids[i], 0);
    CHECK_ERR(shmq_wait_durable(NULL, 0, 0), SHMQ_ERR_INVALID, "NULL");
    CHECK_ERR(shmq_commit_id(p, NULL), SHMQ_ERR_INVALID, "no reservation");
    shmq_consumer_close(c);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(q));
    printf("ok durable_options_are_checked\n");
}

/* ---- a queue synced on every send ---- */

typedef struct {
    uint64_t ids[N_TOTAL];
} board;

static board *b;
static const char *queue;
static signal_pipe to_parent, to_child;

static board *new_board(void) {
    void *m = mmap(NULL, sizeof(board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    return (board *)m;
}

static void always_producer(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    for (uint64_t seq = 0; seq < N_SYNCED; seq++) {
        CHECK_OK(shmq_send_id(p, buf, make(seq, buf), STEP_NS, &b->ids[seq]));
        CHECK_MSG(seq == 0 || b->ids[seq] > b->ids[seq - 1], "ids increase");
    }
    signal_ready(&to_parent);
    await_ready(&to_child);
    for (uint64_t seq = N_SYNCED; seq < N_SYNCED + N_NOWAIT; seq++) {
        CHECK_OK(shmq_send_nowait(p, buf, make(seq, buf), STEP_NS, &b->ids[seq]));
        CHECK(b->ids[seq] > b->ids[seq - 1]);
    }
    signal_ready(&to_parent);
    await_ready(&to_child);
    CHECK_OK(shmq_wait_durable(p, b->ids[N_SYNCED + N_NOWAIT - 1], STEP_NS));
    /* Zero-copy under SHMQ_FSYNC_ALWAYS: the commit returns once synced. */
    void *space;
    uint64_t seq = N_TOTAL - 1;
    size_t len = make(seq, buf);
    CHECK_OK(shmq_reserve(p, len, &space, STEP_NS));
    memcpy(space, buf, len);
    CHECK_OK(shmq_commit_id(p, &b->ids[seq]));
    CHECK(b->ids[seq] > b->ids[seq - 1]);
    signal_ready(&to_parent);
    shmq_producer_close(p);
}

/* The log directory exists, belongs to us, is closed to others, and holds META and at
 * least one segment file. */
static void check_log_dir(const char *dir) {
    struct stat st;
    CHECK_MSG(stat(dir, &st) == 0, "stat %s: %s", dir, strerror(errno));
    CHECK(S_ISDIR(st.st_mode));
    CHECK(st.st_uid == getuid());
    CHECK_MSG((st.st_mode & 077) == 0, "%s has mode %o", dir, (unsigned)(st.st_mode & 0777));
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int files = 0, meta = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        files++;
        if (strcmp(e->d_name, "META") == 0) meta = 1;
    }
    closedir(d);
    CHECK_MSG(meta && files >= 2, "%s: META %d, %d files", dir, meta, files);
}

static void fsync_always_from_c(void) {
    queue = unique_name("always");
    char dir[512];
    log_dir(dir, sizeof dir, "always");
    shmq_options o;
    durable_options(&o, dir, SHMQ_FSYNC_ALWAYS);
    CHECK_OK(shmq_create(queue, &o));
    check_log_dir(dir);
    b = new_board();
    signal_pipe_init(&to_parent);
    signal_pipe_init(&to_child);
    /* The parent opens its handles after the fork: a child must not inherit them. */
    pid_t child = spawn(always_producer, NULL);

    await_ready(&to_parent);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    /* Each send returned once synced, and consumers see synced messages: all there now. */
    for (uint64_t seq = 0; seq < N_SYNCED; seq++) expect(c, seq, b->ids[seq], 0);
    expect_nothing(c, 0);

    signal_ready(&to_child);
    await_ready(&to_parent);
    /* Sent without waiting, and nobody synced them: consumers do not see them. */
    expect_nothing(c, 0);
    expect_nothing(c, 100 * NS_PER_MS);

    signal_ready(&to_child);
    await_ready(&to_parent);
    /* shmq_wait_durable synced them, and the commit its own message. */
    for (uint64_t seq = N_SYNCED; seq < N_TOTAL; seq++) expect(c, seq, b->ids[seq], 0);
    expect_nothing(c, 0);
    shmq_consumer_close(c);
    wait_child(child);
    check_log_dir(dir);
    CHECK_OK(shmq_remove(queue));
    printf("ok fsync_always_from_c: %d synced sends, %d in flight then waited for, ids %" PRIu64
           " to %" PRIu64 "\n",
           N_SYNCED, N_NOWAIT, b->ids[0], b->ids[N_TOTAL - 1]);
    munmap(b, sizeof(board));
}

/* ---- restart ---- */

static void restart_producer(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    for (uint64_t seq = 0; seq < N_RESTART; seq++) CHECK_OK(shmq_send_id(p, buf, make(seq, buf), STEP_NS, &b->ids[seq]));
    signal_ready(&to_parent);
    await_ready(&to_child);
    /* Closing the last producer syncs the log and records where the consumer stands. */
    shmq_producer_close(p);
}

static void a_restarted_queue_delivers_what_was_not_received(void) {
    queue = unique_name("restart");
    char dir[512];
    log_dir(dir, sizeof dir, "restart");
    shmq_options o;
    durable_options(&o, dir, SHMQ_FSYNC_ALWAYS);
    CHECK_OK(shmq_create(queue, &o));
    b = new_board();
    signal_pipe_init(&to_parent);
    signal_pipe_init(&to_child);
    pid_t child = spawn(restart_producer, NULL);
    await_ready(&to_parent);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    for (uint64_t seq = 0; seq < RECEIVED_BEFORE; seq++) expect(c, seq, b->ids[seq], STEP_NS);
    shmq_consumer_close(c);
    signal_ready(&to_child);
    wait_child(child);

    /* The host "restarts": the shared memory goes, the log directory stays. */
    CHECK_OK(shmq_remove(queue));
    shmq_producer *p;
    CHECK_RC(shmq_producer_open(queue, &p), SHMQ_ERR_NOT_FOUND);
    check_log_dir(dir);
    CHECK_OK(shmq_open_or_create(queue, &o));

    CHECK_OK(shmq_consumer_open(queue, &c));
    for (uint64_t seq = RECEIVED_BEFORE; seq < N_RESTART; seq++) expect(c, seq, b->ids[seq], STEP_NS);
    expect_nothing(c, 0);
    CHECK_OK(shmq_producer_open(queue, &p));
    uint8_t buf[MAX_LEN];
    uint64_t id;
    CHECK_OK(shmq_send_id(p, buf, make(N_RESTART, buf), STEP_NS, &id));
    CHECK_MSG(id > b->ids[N_RESTART - 1], "id %" PRIu64 " after the restart, %" PRIu64 " before", id,
              b->ids[N_RESTART - 1]);
    expect(c, N_RESTART, id, 0);
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok a_restarted_queue_delivers_what_was_not_received: %d of %d, next id %" PRIu64 " > %" PRIu64 "\n",
           N_RESTART - RECEIVED_BEFORE, N_RESTART, id, b->ids[N_RESTART - 1]);
    munmap(b, sizeof(board));
}

int main(int argc, char **argv) {
    check_init();
    CHECK_MSG(argc == 2, "usage: durable DIR");
    base = argv[1];
    durable_options_are_checked();
    fsync_always_from_c();
    a_restarted_queue_delivers_what_was_not_received();
    printf("durable: all passed\n");
    return 0;
}
