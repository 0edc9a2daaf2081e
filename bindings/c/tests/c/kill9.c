/* A participant killed with SIGKILL frees its slot: the consumer slot (and an SPSC
 * producer slot) can be taken again, and messages queued before the kill are delivered
 * to the new consumer. A stopped (SIGSTOP) holder is alive: its slot stays busy. */
#include "check.h"

static const char *queue;
static signal_pipe ready;

static void hold_consumer(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    char buf[16];
    size_t len;
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS)); /* takes "one" */
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    signal_ready(&ready);
    for (;;) pause(); /* until killed */
}

static void hold_producer(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_send(p, "from the dead", 13, 0));
    signal_ready(&ready);
    for (;;) pause();
}

static void killed_consumer_frees_the_slot(int mode) {
    queue = unique_name("kill-consumer");
    create_queue(queue, mode, 1 << 12, 64);
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_send(p, "one", 3, 0));
    CHECK_OK(shmq_send(p, "two", 3, 0));
    signal_pipe_init(&ready);
    pid_t child = spawn(hold_consumer, NULL);
    await_ready(&ready);
    shmq_consumer *c = NULL;
    CHECK_RC(shmq_consumer_open(queue, &c), SHMQ_ERR_BUSY);
    /* Stopped is alive. */
    CHECK(kill(child, SIGSTOP) == 0);
    int status;
    CHECK(waitpid(child, &status, WUNTRACED) == child && WIFSTOPPED(status));
    CHECK_RC(shmq_consumer_open(queue, &c), SHMQ_ERR_BUSY);
    CHECK(kill(child, SIGKILL) == 0);
    status = wait_child_status(child, STEP_NS);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_OK(shmq_consumer_open(queue, &c));
    char buf[16];
    size_t len;
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    CHECK_OK(shmq_send(p, "three", 5, 0));
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    shmq_consumer_close(c);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(queue));
    close(ready.fd[0]);
    close(ready.fd[1]);
    printf("ok killed_consumer_frees_the_slot %s\n", mode == SHMQ_MODE_SPSC ? "spsc" : "mpsc");
}

static void killed_spsc_producer_frees_the_slot(void) {
    queue = unique_name("kill-producer");
    create_queue(queue, SHMQ_MODE_SPSC, 1 << 12, 64);
    signal_pipe_init(&ready);
    pid_t child = spawn(hold_producer, NULL);
    await_ready(&ready);
    shmq_producer *p = NULL;
    CHECK_RC(shmq_producer_open(queue, &p), SHMQ_ERR_BUSY);
    CHECK(kill(child, SIGKILL) == 0);
    int status = wait_child_status(child, STEP_NS);
    CHECK(WIFSIGNALED(status));
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_send(p, "alive", 5, 0));
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    char buf[16];
    size_t len;
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
    CHECK(len == 13 && memcmp(buf, "from the dead", 13) == 0);
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
    CHECK(len == 5 && memcmp(buf, "alive", 5) == 0);
    shmq_consumer_close(c);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(queue));
    close(ready.fd[0]);
    close(ready.fd[1]);
    puts("ok killed_spsc_producer_frees_the_slot");
}

int main(void) {
    check_init();
    killed_consumer_frees_the_slot(SHMQ_MODE_SPSC);
    killed_consumer_frees_the_slot(SHMQ_MODE_MPSC);
    killed_spsc_producer_frees_the_slot();
    puts("kill9: all passed");
    return 0;
}
