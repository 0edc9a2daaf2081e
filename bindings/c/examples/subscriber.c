/* subscriber: joins subscription SUBSCRIPTION of QUEUE (creating both if needed), receives
 * COUNT messages and prints each with its id. Waits at most 10 s for each message.
 *
 *     subscriber [--lag-limit BYTES] [--remove] QUEUE SUBSCRIPTION [COUNT]
 *
 * Every subscription of a queue receives every message sent after it was created
 * (fan-out); processes that join the same subscription share its messages (each message
 * goes to one of them). Try, in three terminals:
 *
 *     ./subscriber orders audit 10
 *     ./subscriber orders billing 10
 *     ./producer orders 10
 *
 * Both subscribers print all ten messages with the same ids. Two subscribers of the same
 * subscription would split the ten between them instead.
 *
 * --lag-limit BYTES creates the subscription with a lag limit: producers then never wait
 * for it by more than BYTES, and when it falls that far behind it misses messages (printed
 * as "lapped"). Without one, a subscription nobody reads holds producers back once the
 * queue is full: --remove removes the subscription when this program is done with it
 * (members of it in other processes are then closed too). If QUEUE does not exist it is
 * created with the defaults (1 MiB, 64 KiB messages, mpsc). BYTES may end in K, M or G.
 *
 *     cc -O2 -I bindings/c/include subscriber.c libshmq.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 */
#include <inttypes.h>
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
    fprintf(stderr, "usage: %s [--lag-limit BYTES] [--remove] QUEUE SUBSCRIPTION [COUNT]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    shmq_subscription_options options;
    shmq_subscription_options_init(&options); /* start now, no lag limit */
    int remove_at_end = 0;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--remove") == 0) {
            remove_at_end = 1;
        } else if (strcmp(argv[i], "--lag-limit") == 0 && i + 1 < argc) {
            if ((options.lag_limit = parse_bytes(argv[++i])) == 0) return usage(argv[0]);
        } else {
            return usage(argv[0]);
        }
    }
    if (argc - i < 2 || argc - i > 3) return usage(argv[0]);
    const char *queue = argv[i], *name = argv[i + 1];
    long count = i + 2 < argc ? strtol(argv[i + 2], NULL, 10) : 10;

    /* Creating a subscription that exists with the same options does nothing. */
    int rc = shmq_subscription_create(queue, name, &options);
    if (rc == SHMQ_ERR_NOT_FOUND) {
        shmq_options queue_options;
        shmq_options_init(&queue_options);
        rc = shmq_open_or_create(queue, &queue_options);
        if (rc != SHMQ_OK) {
            fprintf(stderr, "open_or_create %s: %s\n", queue, shmq_last_error());
            return 1;
        }
        rc = shmq_subscription_create(queue, name, &options);
    }
    if (rc != SHMQ_OK) {
        fprintf(stderr, "subscription_create %s/%s: %s\n", queue, name, shmq_last_error());
        return 1;
    }
    shmq_consumer *consumer;
    rc = shmq_consumer_subscribe(queue, name, &consumer);
    if (rc != SHMQ_OK) {
        fprintf(stderr, "consumer_subscribe %s/%s: %s\n", queue, name, shmq_last_error());
        return 1;
    }
    uint32_t max_message;
    shmq_consumer_max_message(consumer, &max_message);
    char *buf = malloc(max_message); /* always large enough */
    int status = 0;
    long received = 0;
    while (received < count) {
        size_t len;
        shmq_msg_info info;
        rc = shmq_recv_info(consumer, buf, max_message, &len, &info, 10 * SECOND);
        if (rc == SHMQ_ERR_LAPPED) {
            printf("lapped: missed %" PRIu64 " bytes of messages\n", info.missed_bytes);
            continue;
        }
        if (rc == SHMQ_ERR_CLOSED) break; /* the subscription or the queue was removed */
        if (rc != SHMQ_OK) {
            fprintf(stderr, "recv: %s\n", shmq_last_error());
            status = 1;
            break;
        }
        if (info.delivery_count > 1)
            printf("id %" PRIu64 " (delivery %" PRIu32 "): %.*s\n", info.id, info.delivery_count, (int)len, buf);
        else
            printf("id %" PRIu64 ": %.*s\n", info.id, (int)len, buf);
        received++;
    }
    free(buf);
    shmq_consumer_close(consumer);
    if (remove_at_end) shmq_subscription_remove(queue, name);
    printf("received %ld messages from %s/%s\n", received, queue, name);
    return status;
}
