/* The C side of the interop tests: produces or consumes the stream of check.h, which
 * tests/support/interop.rs (a Rust process) consumes or produces. Every wait is bounded.
 * Usage: interop produce|consume NAME COUNT SEED MAX_LEN */
#include "check.h"

int main(int argc, char **argv) {
    check_init();
    CHECK_MSG(argc == 6, "usage: interop produce|consume NAME COUNT SEED MAX_LEN");
    const char *role = argv[1], *name = argv[2];
    uint64_t count = strtoull(argv[3], NULL, 10), seed = strtoull(argv[4], NULL, 10);
    uint64_t max_len = strtoull(argv[5], NULL, 10);
    uint8_t *want = malloc(max_len + 1), *got = malloc(max_len + 1);
    CHECK(want != NULL && got != NULL);
    if (strcmp(role, "produce") == 0) {
        shmq_producer *p;
        CHECK_OK(shmq_producer_open(name, &p));
        for (uint64_t i = 0; i < count; i++) {
            size_t len = stream_message(seed, i, max_len, want);
            if (i % 2) {
                CHECK_OK(shmq_send(p, want, len, STEP_NS));
            } else {
                void *slot;
                CHECK_OK(shmq_reserve(p, len, &slot, STEP_NS));
                memcpy(slot, want, len);
                CHECK_OK(shmq_commit(p));
            }
        }
        shmq_producer_close(p);
        printf("produced %" PRIu64 "\n", count);
    } else {
        CHECK(strcmp(role, "consume") == 0);
        shmq_consumer *c;
        CHECK_OK(shmq_consumer_open(name, &c));
        for (uint64_t i = 0; i < count; i++) {
            size_t wlen = stream_message(seed, i, max_len, want), len;
            CHECK_OK(shmq_recv(c, got, max_len + 1, &len, STEP_NS));
            CHECK_MSG(len == wlen && memcmp(got, want, len) == 0, "message %" PRIu64 ": %zu bytes, want %zu", i,
                      len, wlen);
        }
        shmq_consumer_close(c);
        printf("consumed %" PRIu64 "\n", count);
    }
    free(want);
    free(got);
    return 0;
}
