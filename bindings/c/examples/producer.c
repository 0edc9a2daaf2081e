/* producer: sends COUNT messages ("message 0", "message 1", ...) to a queue, creating it
 * with the default options if it does not exist yet.
 *
 *     cc -O2 -I bindings/c/include producer.c libshmq.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 *     ./producer orders 10
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
    shmq_options_init(&options); /* 1 MiB, 64 KiB messages, MPSC, 0600 */
    int rc = shmq_open_or_create(queue, &options);
    if (rc != SHMQ_OK) {
        fprintf(stderr, "open_or_create %s: %s\n", queue, shmq_strerror(rc));
        return 1;
    }
    shmq_producer *producer;
    rc = shmq_producer_open(queue, &producer);
    if (rc != SHMQ_OK) {
        fprintf(stderr, "producer_open %s: %s\n", queue, shmq_strerror(rc));
        return 1;
    }
    for (long i = 0; i < count; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "message %ld", i);
        /* Waits up to 10 s while the queue is full. */
        rc = shmq_send(producer, msg, (size_t)len, 10 * SECOND);
        if (rc != SHMQ_OK) {
            fprintf(stderr, "send: %s\n", shmq_strerror(rc));
            shmq_producer_close(producer);
            return 1;
        }
    }
    shmq_producer_close(producer);
    printf("sent %ld messages to %s\n", count, queue);
    return 0;
}
