/* MPSC with 4 forked producer processes, each sending its own numbered messages of varying
 * sizes; the consumer checks that every message arrives exactly once, intact, and in each
 * producer's own order. Usage: mpsc [PER_PRODUCER] */
#include "check.h"

#define PRODUCERS 4
#define MAX_LEN 700

static const char *queue;
static uint32_t per_producer = 50000;

/* Message `seq` of producer `id`: [id][seq:4][filler], 5 to MAX_LEN bytes. */
static size_t make(uint8_t id, uint32_t seq, uint8_t *buf) {
    size_t len = 5 + (size_t)(mix(((uint64_t)id << 32) | seq) % (MAX_LEN - 4));
    buf[0] = id;
    memcpy(buf + 1, &seq, 4);
    for (size_t j = 5; j < len; j++) buf[j] = (uint8_t)(id * 31 + seq + j);
    return len;
}

static void produce(void *arg) {
    uint8_t id = (uint8_t)(uintptr_t)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    static uint8_t buf[MAX_LEN];
    for (uint32_t seq = 0; seq < per_producer; seq++) {
        size_t len = make(id, seq, buf);
        if (seq % 4 == 0) {
            void *slot;
            CHECK_OK(shmq_reserve(p, len + 16, &slot, STEP_NS));
            memcpy(slot, buf, len);
            CHECK_OK(shmq_commit_len(p, len));
        } else {
            CHECK_OK(shmq_send(p, buf, len, STEP_NS));
        }
    }
    shmq_producer_close(p);
}

int main(int argc, char **argv) {
    check_init();
    if (argc >= 2) per_producer = (uint32_t)strtoul(argv[1], NULL, 10);
    queue = unique_name("mpsc");
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 15, MAX_LEN + 16);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    pid_t kids[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) kids[i] = spawn(produce, (void *)(uintptr_t)i);

    uint32_t next[PRODUCERS] = {0};
    static uint8_t got[MAX_LEN + 16], want[MAX_LEN];
    uint64_t total = (uint64_t)PRODUCERS * per_producer;
    int interleavings = 0, last = -1;
    for (uint64_t n = 0; n < total; n++) {
        size_t len;
        CHECK_OK(shmq_recv(c, got, sizeof got, &len, STEP_NS));
        CHECK_MSG(len >= 5, "message %" PRIu64 " has %zu bytes", n, len);
        uint8_t id = got[0];
        uint32_t seq;
        memcpy(&seq, got + 1, 4);
        CHECK_MSG(id < PRODUCERS, "producer id %u", id);
        CHECK_MSG(seq == next[id], "producer %u: got seq %u, want %u", id, seq, next[id]);
        size_t wlen = make(id, seq, want);
        CHECK_MSG(len == wlen && memcmp(got, want, len) == 0, "producer %u seq %u differs", id, seq);
        next[id]++;
        if (last != -1 && last != id) interleavings++;
        last = id;
    }
    for (int i = 0; i < PRODUCERS; i++) wait_child(kids[i]);
    for (int i = 0; i < PRODUCERS; i++) CHECK(next[i] == per_producer);
    size_t len;
    CHECK_RC(shmq_recv(c, got, sizeof got, &len, 0), SHMQ_ERR_EMPTY);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    printf("ok mpsc: %d producers x %u messages, each producer in order (%d switches between producers)\n",
           PRODUCERS, per_producer, interleavings);
    puts("mpsc: all passed");
    return 0;
}
