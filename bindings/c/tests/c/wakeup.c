/* Waiting across processes: a consumer blocked in shmq_recv is woken by a message from
 * another process (under each wait policy, with a forever and a bounded timeout), and by
 * shmq_remove; a producer blocked on a full queue is woken when another process drains it. */
#include "check.h"

static const char *queue;
static int policy;
static int64_t child_timeout;
static signal_pipe ready;

static const char *policy_name(int w) {
    return w == SHMQ_WAIT_SPIN ? "spin" : w == SHMQ_WAIT_BLOCK ? "block" : "adaptive";
}

static void blocked_consumer(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    CHECK_OK(shmq_consumer_set_wait(c, policy));
    char buf[32];
    size_t len;
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    signal_ready(&ready);
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, child_timeout));
    CHECK(len == 4 && memcmp(buf, "wake", 4) == 0);
    shmq_consumer_close(c);
}

static void consumer_is_woken_by_a_message(int w, int64_t timeout) {
    queue = unique_name("wake");
    policy = w;
    child_timeout = timeout;
    create_queue(queue, SHMQ_MODE_SPSC, 1 << 12, 64);
    signal_pipe_init(&ready);
    pid_t child = spawn(blocked_consumer, NULL);
    await_ready(&ready);
    sleep_ms(50); /* let it reach its wait (spinning, or asleep in the kernel) */
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_send(p, "wake", 4, 0));
    wait_child(child);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(queue));
    close(ready.fd[0]);
    close(ready.fd[1]);
    printf("ok consumer_is_woken_by_a_message %s timeout %s\n", policy_name(w), timeout < 0 ? "forever" : "30s");
}

static void consumer_sees_the_removal(void *arg) {
    (void)arg;
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    CHECK_OK(shmq_consumer_set_wait(c, policy));
    signal_ready(&ready);
    char buf[8];
    size_t len;
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, child_timeout), SHMQ_ERR_CLOSED);
    shmq_consumer_close(c);
}

static void consumer_is_woken_by_remove(int w) {
    queue = unique_name("wake-rm");
    policy = w;
    child_timeout = -1;
    create_queue(queue, SHMQ_MODE_MPSC, 1 << 12, 64);
    signal_pipe_init(&ready);
    pid_t child = spawn(consumer_sees_the_removal, NULL);
    await_ready(&ready);
    sleep_ms(50);
    CHECK_OK(shmq_remove(queue));
    wait_child(child);
    close(ready.fd[0]);
    close(ready.fd[1]);
    printf("ok consumer_is_woken_by_remove %s\n", policy_name(w));
}

static void blocked_producer(void *arg) {
    (void)arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(queue, &p));
    CHECK_OK(shmq_producer_set_wait(p, policy));
    char msg[100];
    memset(msg, 'f', sizeof msg);
    int n = 0;
    while (shmq_send(p, msg, sizeof msg, 0) == SHMQ_OK) n++;
    CHECK(n > 0);
    signal_ready(&ready);
    CHECK_OK(shmq_send(p, "unblocked", 9, child_timeout));
    shmq_producer_close(p);
}

static void producer_is_woken_by_space(int w) {
    queue = unique_name("wake-full");
    policy = w;
    child_timeout = -1;
    create_queue(queue, SHMQ_MODE_SPSC, 1 << 12, 128);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(queue, &c));
    signal_pipe_init(&ready);
    pid_t child = spawn(blocked_producer, NULL);
    await_ready(&ready);
    sleep_ms(50);
    char buf[128];
    size_t len;
    int filler = 0;
    for (;;) {
        CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
        if (len == 9) break;
        CHECK(len == 100 && buf[0] == 'f');
        filler++;
    }
    CHECK(memcmp(buf, "unblocked", 9) == 0);
    CHECK(filler > 0);
    wait_child(child);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(queue));
    close(ready.fd[0]);
    close(ready.fd[1]);
    printf("ok producer_is_woken_by_space %s (after %d queued messages)\n", policy_name(w), filler);
}

int main(void) {
    check_init();
    int policies[] = {SHMQ_WAIT_BLOCK, SHMQ_WAIT_ADAPTIVE, SHMQ_WAIT_SPIN};
    for (int i = 0; i < 3; i++) {
        consumer_is_woken_by_a_message(policies[i], -1);
        consumer_is_woken_by_a_message(policies[i], STEP_NS);
        consumer_is_woken_by_remove(policies[i]);
        producer_is_woken_by_space(policies[i]);
    }
    puts("wakeup: all passed");
    return 0;
}
