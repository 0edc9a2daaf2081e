/* A forked producer process sends 300,000 messages of random sizes (0 to 2 KiB, the
 * stream of check.h) through a 64 KiB queue; the consumer verifies each one in order,
 * byte for byte. Both sides mix the copying and the zero-copy calls. Usage:
 * stream spsc|mpsc [COUNT] */
#include "check.h"

#define MAX_LEN 2048
#define SEED 20240611ULL

static const char *queue;
static uint64_t count = 300000;

static void produce(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    static uint8_t msg[MAX_LEN];
    for (uint64_t i = 0; i < count; i++) {
        size_t len = stream_message(SEED, i, MAX_LEN, msg);
        if (i % 3 == 2) {
            void *slot;
            CHECK_OK(shmq_reserve(p, len, &slot, STEP_NS));
            memcpy(slot, msg, len);
            CHECK_OK(shmq_commit(p));
        } else {
            CHECK_OK(shmq_send(p, msg, len, STEP_NS));
        }
    }
    shmq_producer_close(p);
}

int main(int argc, char **argv) {
    check_init();
    CHECK_MSG(argc >= 2, "usage: stream spsc|mpsc [COUNT]");
    int mode = strcmp(argv[1], "spsc") == 0 ? SHMQ_MODE_SPSC : SHMQ_MODE_MPSC;
    if (argc >= 3) count = strtoull(argv[2], NULL, 10);
    queue = unique_name("stream");
    create_queue(queue, mode, 1 << 16, MAX_LEN);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    pid_t child = spawn(produce, NULL);

    static uint8_t want[MAX_LEN], got[MAX_LEN];
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < count; i++) {
        size_t wlen = stream_message(SEED, i, MAX_LEN, want);
        size_t len;
        if (i % 2 == 0) {
            CHECK_OK(shmq_recv(c, got, sizeof got, &len, STEP_NS));
            CHECK_MSG(len == wlen && memcmp(got, want, len) == 0, "message %" PRIu64 ": %zu bytes, want %zu",
                      i, len, wlen);
        } else {
            const void *data;
            CHECK_OK(shmq_peek(c, &data, &len, STEP_NS));
            CHECK_MSG(len == wlen && memcmp(data, want, len) == 0, "message %" PRIu64 ": %zu bytes, want %zu",
                      i, len, wlen);
            CHECK_OK(shmq_release(c));
        }
        bytes += len;
    }
    size_t len;
    CHECK_RC(shmq_recv(c, got, sizeof got, &len, 0), SHMQ_ERR_EMPTY);
    wait_child(child);
    CHECK_RC(shmq_recv(c, got, sizeof got, &len, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok stream %s: %" PRIu64 " messages, %" PRIu64 " bytes, in order\n", argv[1], count, bytes);
    puts("stream: all passed");
    return 0;
}
