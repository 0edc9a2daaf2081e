/* consumer: receives COUNT messages from a queue, prints them, then removes the queue.
 * Waits at most 10 s for each message.
 *
 *     consumer [--capacity BYTES] [--max-message BYTES] [--mode spsc|mpsc] QUEUE [COUNT]
 *
 * Without option flags it opens QUEUE as it is (whatever options it was created with),
 * and creates it with the defaults (1 MiB, 64 KiB messages, mpsc) if it does not exist.
 * With option flags it opens QUEUE if it exists with exactly those options, and creates
 * it with them otherwise; unspecified ones take the defaults. BYTES may end in K, M or G
 * (KiB, MiB, GiB).
 *
 *     cc -O2 -I bindings/c/include consumer.c libshmq.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 *     ./consumer orders 10
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

    shmq_consumer *consumer;
    int rc = explicit_options ? SHMQ_ERR_NOT_FOUND : shmq_consumer_open(queue, &consumer);
    if (rc == SHMQ_ERR_NOT_FOUND) {
        /* Create it, or check that the existing one has the options asked for. */
        rc = shmq_open_or_create(queue, &options);
        if (rc != SHMQ_OK) {
            fprintf(stderr, "open_or_create %s: %s\n", queue, shmq_last_error());
            return 1;
        }
        rc = shmq_consumer_open(queue, &consumer);
    }
    if (rc != SHMQ_OK) {
        fprintf(stderr, "consumer_open %s: %s\n", queue, shmq_last_error());
        return 1;
    }
    uint32_t max_message;
    shmq_consumer_max_message(consumer, &max_message);
    char *buf = malloc(max_message); /* always large enough */
    int status = 0;
    long received = 0;
    while (received < count) {
        size_t len;
        rc = shmq_recv(consumer, buf, max_message, &len, 10 * SECOND);
        if (rc == SHMQ_ERR_CLOSED) break; /* removed by someone else, and drained */
        if (rc != SHMQ_OK) {
            fprintf(stderr, "recv: %s\n", shmq_last_error());
            status = 1;
            break;
        }
        printf("%.*s\n", (int)len, buf);
        received++;
    }
    free(buf);
    shmq_consumer_close(consumer);
    shmq_remove(queue);
    printf("received %ld messages from %s\n", received, queue);
    return status;
}
