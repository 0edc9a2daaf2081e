/* producer: sends COUNT messages ("message 0", "message 1", ...) to a queue.
 *
 *     producer [--capacity BYTES] [--max-message BYTES] [--mode spsc|mpsc] QUEUE [COUNT]
 *
 * Without option flags it opens QUEUE as it is (whatever options it was created with),
 * and creates it with the defaults (1 MiB, 64 KiB messages, mpsc) if it does not exist.
 * With option flags it opens QUEUE if it exists with exactly those options, and creates
 * it with them otherwise; unspecified ones take the defaults. BYTES may end in K, M or G
 * (KiB, MiB, GiB).
 *
 *     cc -O2 -I bindings/c/include producer.c libshmq.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 *     ./producer orders 10
 *     ./producer --mode spsc --capacity 64K orders 10
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmq.h"

#define SECOND 1000000000LL

/* "4096", "64K", "1M", "1G" -> bytes; 0 for anything else. */
static unsigned long long parse_bytes(const char *s) {
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (end == s) return 0;
    if (*end == 'K' || *end == 'k') n <<= 10, end++;
    else if (*end == 'M' || *end == 'm') n <<= 20, end++;
    else if (*end == 'G' || *end == 'g') n <<= 30, end++;
    return *end == '\0' ? n : 0;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--capacity BYTES] [--max-message BYTES] [--mode spsc|mpsc] QUEUE [COUNT]\n",
            argv0);
    return 2;
}

int main(int argc, char **argv) {
    shmq_options options;
    shmq_options_init(&options); /* 1 MiB, 64 KiB messages, MPSC, 0600 */
    int explicit_options = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc) return usage(argv[0]);
        const char *flag = argv[i], *value = argv[i + 1];
        explicit_options = 1;
        if (strcmp(flag, "--capacity") == 0) {
            if ((options.capacity = parse_bytes(value)) == 0) return usage(argv[0]);
        } else if (strcmp(flag, "--max-message") == 0) {
            unsigned long long m = parse_bytes(value);
            if (m == 0 || m > 0xffffffffULL) return usage(argv[0]);
            options.max_message = (uint32_t)m;
        } else if (strcmp(flag, "--mode") == 0) {
            if (strcmp(value, "spsc") == 0) options.mode = SHMQ_MODE_SPSC;
            else if (strcmp(value, "mpsc") == 0) options.mode = SHMQ_MODE_MPSC;
            else return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }
    if (i >= argc || argc - i > 2) return usage(argv[0]);
    const char *queue = argv[i];
    long count = i + 1 < argc ? strtol(argv[i + 1], NULL, 10) : 10;

    shmq_producer *producer;
    int rc = explicit_options ? SHMQ_ERR_NOT_FOUND : shmq_producer_open(queue, &producer);
    if (rc == SHMQ_ERR_NOT_FOUND) {
        /* Create it, or check that the existing one has the options asked for. */
        rc = shmq_open_or_create(queue, &options);
        if (rc != SHMQ_OK) {
            fprintf(stderr, "open_or_create %s: %s\n", queue, shmq_last_error());
            return 1;
        }
        rc = shmq_producer_open(queue, &producer);
    }
    if (rc != SHMQ_OK) {
        fprintf(stderr, "producer_open %s: %s\n", queue, shmq_last_error());
        return 1;
    }
    for (long n = 0; n < count; n++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "message %ld", n);
        /* Waits up to 10 s while the queue is full. */
        rc = shmq_send(producer, msg, (size_t)len, 10 * SECOND);
        if (rc != SHMQ_OK) {
            fprintf(stderr, "send: %s\n", shmq_last_error());
            shmq_producer_close(producer);
            return 1;
        }
    }
    shmq_producer_close(producer);
    printf("sent %ld messages to %s\n", count, queue);
    return 0;
}
