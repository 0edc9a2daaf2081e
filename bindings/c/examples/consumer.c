/* consumer: receives COUNT messages from a queue (creating it if needed), prints them,
 * then removes the queue. Waits at most 10 s for each message.
 *
 *     cc -O2 -I bindings/c/include consumer.c libshmq.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 *     ./consumer orders 10
 */
#include <stdio.h>
#include <stdlib.h>

#include "shmq.h"

#define SECOND 1000000000LL

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s QUEUE [COUNT]\n", argv[0]);
        return 2;
    }
    const char *queue = argv[1];
    long count = argc > 2 ? strtol(argv[2], NULL, 10) : 10;

    shmq_options options;
    shmq_options_init(&options);
    int rc = shmq_open_or_create(queue, &options);
    if (rc != SHMQ_OK) {
        fprintf(stderr, "open_or_create %s: %s\n", queue, shmq_strerror(rc));
        return 1;
    }
    shmq_consumer *consumer;
    rc = shmq_consumer_open(queue, &consumer);
    if (rc != SHMQ_OK) {
        fprintf(stderr, "consumer_open %s: %s\n", queue, shmq_strerror(rc));
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
            fprintf(stderr, "recv: %s\n", shmq_strerror(rc));
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
