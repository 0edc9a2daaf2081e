/* Signals and waiting calls: a signal alone never cuts a wait short (the handler runs and
 * the call waits on to its absolute deadline); shmq_consumer_interrupt /
 * shmq_producer_interrupt, called from a SIGALRM handler installed without SA_RESTART,
 * make the blocked call return SHMQ_ERR_INTERRUPTED; the handle then works as before. */
#include "check.h"

#include <pthread.h>

static shmq_consumer *volatile g_rx;
static shmq_producer *volatile g_tx;
static volatile sig_atomic_t g_signals;
static volatile sig_atomic_t g_interrupt_rc = 1;
static volatile sig_atomic_t g_errno_changed;

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    errno = 4242;
    g_signals++;
    if (g_rx != NULL) g_interrupt_rc = shmq_consumer_interrupt(g_rx);
    if (g_tx != NULL) g_interrupt_rc = shmq_producer_interrupt(g_tx);
    if (errno != 4242) g_errno_changed = 1;
    errno = saved;
}

static timer_t g_timer;

/* SIGALRM every `ms` milliseconds from now (0: stop), from a POSIX timer. */
static void tick_every(int ms) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = (long)ms * NS_PER_MS;
    its.it_interval = its.it_value;
    CHECK(timer_settime(g_timer, 0, &its, NULL) == 0);
}

static void install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = 0; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGALRM;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &g_timer) == 0);
}

/* Without an interrupt call, signals do not end a wait: the timeout runs to its deadline. */
static void signals_alone_do_not_interrupt_a_wait(void) {
    const char *name = unique_name("sigwait");
    create_queue(name, SHMQ_MODE_SPSC, 4096, 64);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(name, &c));
    CHECK_OK(shmq_consumer_set_wait(c, SHMQ_WAIT_BLOCK));
    g_signals = 0;
    tick_every(10);
    uint8_t byte;
    size_t len;
    int64_t t0 = now_ns();
    CHECK_RC(shmq_recv(c, &byte, 1, &len, 300 * NS_PER_MS), SHMQ_ERR_TIMEOUT);
    int64_t waited = now_ns() - t0;
    tick_every(0);
    CHECK_MSG(waited >= 300 * NS_PER_MS, "returned after %lld ns", (long long)waited);
    CHECK_MSG(g_signals >= 2, "only %d signals arrived during the wait", (int)g_signals);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok signals_alone_do_not_interrupt_a_wait: %d signals, waited the full timeout\n",
           (int)g_signals);
}

typedef struct {
    const char *name;
} child_args;

/* Child process: sends one message "after" once started (the parent waits for it). */
static void send_after(void *arg) {
    child_args *a = arg;
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(a->name, &p));
    CHECK_OK(shmq_send(p, "after", 5, STEP_NS));
    shmq_producer_close(p);
}

/* recv(-1) blocked on an empty queue; a SIGALRM handler interrupts it. */
static void handler_interrupts_a_blocked_recv(int wait) {
    const char *name = unique_name("sigrecv");
    create_queue(name, SHMQ_MODE_SPSC, 4096, 64);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(name, &c));
    CHECK_OK(shmq_consumer_set_wait(c, wait));
    g_signals = 0;
    g_interrupt_rc = 1;
    g_rx = c;
    tick_every(30);
    uint8_t buf[16];
    size_t len = 99;
    int rc = shmq_recv(c, buf, sizeof buf, &len, -1);
    tick_every(0);
    g_rx = NULL;
    CHECK_RC(rc, SHMQ_ERR_INTERRUPTED);
    CHECK(len == 0);
    CHECK(g_signals >= 1);
    CHECK_RC(g_interrupt_rc, SHMQ_OK);
    CHECK(!g_errno_changed);
    CHECK(strstr(shmq_last_error(), "interrupted") != NULL);

    /* The interruption is used up: the handle waits normally, and gets what another
     * process sends. */
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY);
    child_args a = {name};
    pid_t child = spawn(send_after, &a);
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, STEP_NS));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    wait_child(child);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok handler_interrupts_a_blocked_recv %s\n", wait == SHMQ_WAIT_BLOCK ? "block" : "adaptive");
}

/* send(-1) blocked on a full queue; a SIGALRM handler interrupts it. */
static void handler_interrupts_a_blocked_send(void) {
    const char *name = unique_name("sigsend");
    create_queue(name, SHMQ_MODE_MPSC, 4096, 64);
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(name, &p));
    uint8_t msg[64] = {0};
    while (shmq_send(p, msg, sizeof msg, 0) == SHMQ_OK) {
    }
    CHECK_RC(shmq_send(p, msg, sizeof msg, 0), SHMQ_ERR_FULL);
    g_interrupt_rc = 1;
    g_tx = p;
    tick_every(30);
    int rc = shmq_send(p, msg, sizeof msg, -1);
    tick_every(0);
    g_tx = NULL;
    CHECK_RC(rc, SHMQ_ERR_INTERRUPTED);
    CHECK_RC(g_interrupt_rc, SHMQ_OK);
    void *slot;
    CHECK_RC(shmq_reserve(p, 8, &slot, 0), SHMQ_ERR_FULL); /* used up; still full */
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(name));
    printf("ok handler_interrupts_a_blocked_send\n");
}

/* An interrupt with no call waiting is kept for the next call that has to wait; a call
 * that completes at once leaves it pending; several are reported once. */
static void an_early_interrupt_is_kept_for_the_next_wait(void) {
    const char *name = unique_name("early");
    create_queue(name, SHMQ_MODE_SPSC, 4096, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    uint8_t buf[16];
    size_t len;
    CHECK_OK(shmq_consumer_interrupt(c));
    CHECK_OK(shmq_consumer_interrupt(c));
    CHECK_OK(shmq_send(p, "m", 1, 0));
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, -1)); /* a message is there: no wait */
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 0), SHMQ_ERR_EMPTY); /* try: never reported */
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, -1), SHMQ_ERR_INTERRUPTED);
    CHECK_RC(shmq_recv(c, buf, sizeof buf, &len, 20 * NS_PER_MS), SHMQ_ERR_TIMEOUT); /* once */
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok an_early_interrupt_is_kept_for_the_next_wait\n");
}

static void *interrupt_soon(void *arg) {
    sleep_ms(30);
    return (void *)(intptr_t)shmq_consumer_interrupt(arg);
}

/* From another thread, too: the interrupt does not wait for the re-entry guard. */
static void another_thread_interrupts_a_blocked_peek(void) {
    const char *name = unique_name("thread");
    create_queue(name, SHMQ_MODE_MPSC, 4096, 64);
    shmq_consumer *c;
    CHECK_OK(shmq_consumer_open(name, &c));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, interrupt_soon, c) == 0);
    const void *data = (const void *)1;
    size_t len = 1;
    CHECK_RC(shmq_peek(c, &data, &len, -1), SHMQ_ERR_INTERRUPTED);
    CHECK(data == NULL && len == 0);
    void *res;
    CHECK(pthread_join(t, &res) == 0);
    CHECK_RC((int)(intptr_t)res, SHMQ_OK);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    printf("ok another_thread_interrupts_a_blocked_peek\n");
}

/* Bad handles are refused without touching the last error. */
static void interrupting_no_handle_is_refused_quietly(void) {
    const char *name = unique_name("quiet");
    create_queue(name, SHMQ_MODE_MPSC, 4096, 64);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    shmq_producer *none;
    CHECK_RC(shmq_producer_open("ctest-quiet-missing", &none), SHMQ_ERR_NOT_FOUND);
    CHECK_RC(shmq_consumer_interrupt(NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_producer_interrupt((shmq_producer *)c), SHMQ_ERR_INVALID);
    shmq_consumer_close(c);
    CHECK_RC(shmq_consumer_interrupt(c), SHMQ_ERR_INVALID); /* within the 64-close window */
    CHECK(strstr(shmq_last_error(), "ctest-quiet-missing") != NULL);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(name));
    printf("ok interrupting_no_handle_is_refused_quietly\n");
}

int main(void) {
    check_init();
    /* The harness's watchdog is alarm(600), whose SIGALRM would now run on_alarm and could
     * end a broken test's wait as if the interrupt had worked: turn it off. A hang is then
     * caught by the Rust side's bound on this process. */
    alarm(0);
    install_handler();
    signals_alone_do_not_interrupt_a_wait();
    handler_interrupts_a_blocked_recv(SHMQ_WAIT_BLOCK);
    handler_interrupts_a_blocked_recv(SHMQ_WAIT_ADAPTIVE);
    handler_interrupts_a_blocked_send();
    an_early_interrupt_is_kept_for_the_next_wait();
    another_thread_interrupts_a_blocked_peek();
    interrupting_no_handle_is_refused_quietly();
    timer_delete(g_timer);
    printf("signals: all passed\n");
    return 0;
}
