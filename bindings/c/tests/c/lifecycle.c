/* Lifecycle of queues and handles, options, and every error code that the operating
 * system or the segment produces (the queue-operation codes are in queue_ops.c). */
#include "check.h"

#include <sys/resource.h>

static void abi_version_matches_header(void) {
    CHECK(shmq_abi_version() == SHMQ_ABI_VERSION);
    CHECK(SHMQ_ABI_VERSION == 1);
    puts("ok abi_version_matches_header");
}

static void options_init_sets_the_defaults(void) {
    shmq_options o;
    memset(&o, 0xAB, sizeof o);
    shmq_options_init(&o);
    CHECK(o.size == sizeof(shmq_options));
    CHECK(o.size == 72);
    CHECK(o.capacity == 1 << 20);
    CHECK(o.capacity == SHMQ_DEFAULT_CAPACITY);
    CHECK(o.max_message == 64 << 10);
    CHECK(o.mode == SHMQ_MODE_MPSC);
    CHECK(o.permissions == 0600);
    CHECK(o.reserved == 0);
    shmq_options_init(NULL); /* ignored */
    puts("ok options_init_sets_the_defaults");
}

static void create_open_remove_round_trip(void) {
    const char *name = unique_name("life");
    shmq_options o;
    shmq_options_init(&o);
    CHECK_OK(shmq_create(name, &o));
    CHECK_RC(shmq_create(name, &o), SHMQ_ERR_EXISTS);
    CHECK_OK(shmq_open_or_create(name, &o));
    o.capacity = 1 << 16;
    CHECK_RC(shmq_open_or_create(name, &o), SHMQ_ERR_INVALID);

    shmq_producer *p = (shmq_producer *)1;
    shmq_consumer *c = (shmq_consumer *)1;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK(p != NULL);
    CHECK_OK(shmq_consumer_open(name, &c));
    CHECK(c != NULL);
    CHECK_OK(shmq_send(p, "hi", 2, 0));
    char buf[8];
    size_t len = 0;
    CHECK_OK(shmq_recv(c, buf, sizeof buf, &len, 0));
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0);
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    CHECK_RC(shmq_remove(name), SHMQ_ERR_NOT_FOUND);

    /* open_or_create creates too. */
    const char *other = unique_name("life-ooc");
    shmq_options_init(&o);
    CHECK_OK(shmq_open_or_create(other, &o));
    CHECK_RC(shmq_create(other, &o), SHMQ_ERR_EXISTS);
    CHECK_OK(shmq_remove(other));
    puts("ok create_open_remove_round_trip");
}

static void missing_queue_is_not_found(void) {
    const char *name = unique_name("missing");
    shmq_producer *p = (shmq_producer *)1;
    shmq_consumer *c = (shmq_consumer *)1;
    CHECK_RC(shmq_producer_open(name, &p), SHMQ_ERR_NOT_FOUND);
    CHECK(p == NULL);
    CHECK_RC(shmq_consumer_open(name, &c), SHMQ_ERR_NOT_FOUND);
    CHECK(c == NULL);
    CHECK_RC(shmq_remove(name), SHMQ_ERR_NOT_FOUND);
    puts("ok missing_queue_is_not_found");
}

static void bad_names_and_options_are_invalid(void) {
    shmq_options o;
    shmq_options_init(&o);
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    const char *bad[] = {"", "has/slash", ".hidden", "sp ace", long_name, "\xff\xfe"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(shmq_create(bad[i], &o), SHMQ_ERR_INVALID);
        shmq_producer *p;
        CHECK_RC(shmq_producer_open(bad[i], &p), SHMQ_ERR_INVALID);
        CHECK_RC(shmq_remove(bad[i]), SHMQ_ERR_INVALID);
    }
    const char *name = unique_name("opts");
    CHECK_RC(shmq_create(NULL, &o), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_create(name, NULL), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_open_or_create(NULL, &o), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_open_or_create(name, NULL), SHMQ_ERR_INVALID);

#define BAD_OPTION(stmt)                                                                  \
    do {                                                                                  \
        shmq_options_init(&o);                                                            \
        stmt;                                                                             \
        CHECK_RC(shmq_create(name, &o), SHMQ_ERR_INVALID);                                \
        CHECK_RC(shmq_open_or_create(name, &o), SHMQ_ERR_INVALID);                        \
    } while (0)
    BAD_OPTION(o.size = 0);
    BAD_OPTION(o.size = sizeof o - 1);
    BAD_OPTION(o.size = 1 << 20); /* garbage, surely */
    BAD_OPTION(o.capacity = 3000);
    BAD_OPTION(o.capacity = 0);
    BAD_OPTION(o.capacity = 512);
    BAD_OPTION(o.max_message = (uint32_t)(o.capacity / 2 + 1));
    BAD_OPTION(o.mode = 0);
    BAD_OPTION(o.mode = 3);
    BAD_OPTION(o.permissions = 0400);
    BAD_OPTION(o.reserved = 1);
#undef BAD_OPTION
    CHECK_RC(shmq_remove(name), SHMQ_ERR_NOT_FOUND); /* nothing was created */

    /* A caller with a larger struct (a later header): zero tail accepted, else refused. */
    struct {
        shmq_options v1;
        uint64_t later_field;
    } big;
    memset(&big, 0, sizeof big);
    shmq_options_init(&big.v1);
    big.v1.size = sizeof big;
    big.later_field = 7;
    CHECK_RC(shmq_create(name, &big.v1), SHMQ_ERR_INVALID);
    big.later_field = 0;
    big.v1.capacity = 1 << 12;
    big.v1.max_message = 100;
    big.v1.mode = SHMQ_MODE_SPSC;
    CHECK_OK(shmq_create(name, &big.v1));
    shmq_producer *p;
    CHECK_OK(shmq_producer_open(name, &p));
    uint32_t max = 0;
    CHECK_OK(shmq_producer_max_message(p, &max));
    CHECK(max == 100);
    shmq_producer_close(p);
    CHECK_OK(shmq_remove(name));
    puts("ok bad_names_and_options_are_invalid");
}

static void permissions_are_applied_exactly(void) {
    const char *name = unique_name("perm");
    shmq_options o;
    shmq_options_init(&o);
    o.permissions = 0660;
    mode_t old = umask(077);
    CHECK_OK(shmq_create(name, &o));
    umask(old);
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmq.%s", name);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK_MSG((st.st_mode & 0777) == 0660, "mode %o", (unsigned)(st.st_mode & 0777));
    CHECK_OK(shmq_remove(name));
    puts("ok permissions_are_applied_exactly");
}

static void second_consumer_and_second_spsc_producer_are_busy(void) {
    const char *name = unique_name("busy");
    create_queue(name, SHMQ_MODE_SPSC, 1 << 12, 256);
    shmq_consumer *c1, *c2 = (shmq_consumer *)1;
    shmq_producer *p1, *p2 = (shmq_producer *)1;
    CHECK_OK(shmq_consumer_open(name, &c1));
    CHECK_RC(shmq_consumer_open(name, &c2), SHMQ_ERR_BUSY);
    CHECK(c2 == NULL);
    CHECK_OK(shmq_producer_open(name, &p1));
    CHECK_RC(shmq_producer_open(name, &p2), SHMQ_ERR_BUSY);
    CHECK(p2 == NULL);
    /* Closing frees the slot. */
    shmq_consumer_close(c1);
    shmq_producer_close(p1);
    CHECK_OK(shmq_consumer_open(name, &c2));
    CHECK_OK(shmq_producer_open(name, &p2));
    shmq_consumer_close(c2);
    shmq_producer_close(p2);

    /* MPSC: many producers, still one consumer. */
    const char *m = unique_name("busy-mpsc");
    create_queue(m, SHMQ_MODE_MPSC, 1 << 12, 256);
    shmq_producer *ps[4];
    for (int i = 0; i < 4; i++) CHECK_OK(shmq_producer_open(m, &ps[i]));
    CHECK_OK(shmq_consumer_open(m, &c1));
    CHECK_RC(shmq_consumer_open(m, &c2), SHMQ_ERR_BUSY);
    for (int i = 0; i < 4; i++) shmq_producer_close(ps[i]);
    shmq_consumer_close(c1);
    CHECK_OK(shmq_remove(name));
    CHECK_OK(shmq_remove(m));
    puts("ok second_consumer_and_second_spsc_producer_are_busy");
}

static void set_wait_accepts_the_three_policies(void) {
    const char *name = unique_name("wait");
    create_queue(name, SHMQ_MODE_MPSC, 1 << 12, 256);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    int policies[] = {SHMQ_WAIT_SPIN, SHMQ_WAIT_BLOCK, SHMQ_WAIT_ADAPTIVE};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(shmq_producer_set_wait(p, policies[i]));
        CHECK_OK(shmq_consumer_set_wait(c, policies[i]));
        CHECK_OK(shmq_send(p, "x", 1, -1));
        char b[4];
        size_t n;
        CHECK_OK(shmq_recv(c, b, sizeof b, &n, -1));
        CHECK(n == 1 && b[0] == 'x');
    }
    int bad[] = {0, 4, -1, 1000};
    for (int i = 0; i < 4; i++) {
        CHECK_RC(shmq_producer_set_wait(p, bad[i]), SHMQ_ERR_INVALID);
        CHECK_RC(shmq_consumer_set_wait(c, bad[i]), SHMQ_ERR_INVALID);
    }
    CHECK_RC(shmq_producer_set_wait(NULL, SHMQ_WAIT_SPIN), SHMQ_ERR_INVALID);
    CHECK_RC(shmq_consumer_set_wait(NULL, SHMQ_WAIT_SPIN), SHMQ_ERR_INVALID);
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_OK(shmq_remove(name));
    puts("ok set_wait_accepts_the_three_policies");
}

static void strerror_answers_every_code(void) {
    int codes[] = {SHMQ_OK,
                   SHMQ_ERR_FULL,
                   SHMQ_ERR_EMPTY,
                   SHMQ_ERR_TIMEOUT,
                   SHMQ_ERR_TOO_LARGE,
                   SHMQ_ERR_BUFFER_TOO_SMALL,
                   SHMQ_ERR_NOT_FOUND,
                   SHMQ_ERR_EXISTS,
                   SHMQ_ERR_INVALID,
                   SHMQ_ERR_BUSY,
                   SHMQ_ERR_PERMISSION,
                   SHMQ_ERR_CORRUPT,
                   SHMQ_ERR_INCOMPATIBLE,
                   SHMQ_ERR_CLOSED,
                   SHMQ_ERR_IO,
                   SHMQ_ERR_INTERNAL,
                   SHMQ_ERR_INTERRUPTED,
                   SHMQ_ERR_LAPPED,
                   SHMQ_ERR_LOG,
                   SHMQ_ERR_NO_SPACE,
                   SHMQ_ERR_ACK_EXPIRED};
    size_t n = sizeof codes / sizeof codes[0];
    const char *unknown = shmq_strerror(-21);
    CHECK(unknown != NULL && strlen(unknown) > 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(codes[i] == -(int)i); /* the stable numbering */
        const char *s = shmq_strerror(codes[i]);
        CHECK(s != NULL && strlen(s) > 0);
        CHECK(strcmp(s, unknown) != 0);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, shmq_strerror(codes[j])) != 0);
    }
    int odd[] = {1, 42, -21, -1000, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) CHECK(strcmp(shmq_strerror(odd[i]), unknown) == 0);
    puts("ok strerror_answers_every_code");
}

static void errno_is_preserved(void) {
    const char *name = unique_name("errno");
    shmq_options o;
    shmq_options_init(&o);
    errno = EDOM;
    CHECK_OK(shmq_create(name, &o));
    CHECK(errno == EDOM);
    errno = ERANGE;
    CHECK_RC(shmq_create(name, &o), SHMQ_ERR_EXISTS); /* shm_open failed with EEXIST inside */
    CHECK(errno == ERANGE);
    shmq_producer *p;
    errno = EDOM;
    CHECK_RC(shmq_producer_open("no-such-queue-at-all-errno", &p), SHMQ_ERR_NOT_FOUND);
    CHECK(errno == EDOM);
    errno = 0;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK(errno == 0);
    errno = EDOM;
    shmq_producer_close(p);
    CHECK(errno == EDOM);
    errno = ERANGE;
    CHECK_OK(shmq_remove(name));
    CHECK(errno == ERANGE);
    puts("ok errno_is_preserved");
}

static void removed_queue_is_closed_after_draining(void) {
    const char *name = unique_name("closed");
    create_queue(name, SHMQ_MODE_MPSC, 1 << 12, 256);
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_OK(shmq_producer_open(name, &p));
    CHECK_OK(shmq_consumer_open(name, &c));
    CHECK_OK(shmq_send(p, "last", 4, 0));
    CHECK_OK(shmq_remove(name));
    CHECK_RC(shmq_send(p, "more", 4, 0), SHMQ_ERR_CLOSED);
    CHECK_RC(shmq_send(p, "more", 4, -1), SHMQ_ERR_CLOSED);
    void *buf;
    CHECK_RC(shmq_reserve(p, 4, &buf, 0), SHMQ_ERR_CLOSED);
    char b[8];
    size_t n;
    CHECK_OK(shmq_recv(c, b, sizeof b, &n, 0));
    CHECK(n == 4 && memcmp(b, "last", 4) == 0);
    CHECK_RC(shmq_recv(c, b, sizeof b, &n, 0), SHMQ_ERR_CLOSED);
    CHECK_RC(shmq_recv(c, b, sizeof b, &n, 50 * NS_PER_MS), SHMQ_ERR_CLOSED);
    CHECK_RC(shmq_recv(c, b, sizeof b, &n, -1), SHMQ_ERR_CLOSED);
    const void *d;
    CHECK_RC(shmq_peek(c, &d, &n, -1), SHMQ_ERR_CLOSED);
    shmq_producer_close(p);
    shmq_consumer_close(c);
    CHECK_RC(shmq_producer_open(name, &p), SHMQ_ERR_NOT_FOUND);
    puts("ok removed_queue_is_closed_after_draining");
}

static const char *perm_name;

static void open_as_another_user(void *arg) {
    (void)arg;
    if (geteuid() == 0) {
        CHECK(setgid(65534) == 0);
        CHECK(setuid(65534) == 0);
    }
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_RC(shmq_producer_open(perm_name, &p), SHMQ_ERR_PERMISSION);
    CHECK_RC(shmq_consumer_open(perm_name, &c), SHMQ_ERR_PERMISSION);
}

static void refused_access_is_permission(void) {
    perm_name = unique_name("denied");
    create_queue(perm_name, SHMQ_MODE_MPSC, 1 << 12, 256);
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmq.%s", perm_name);
    if (geteuid() != 0) CHECK(chmod(path, 0) == 0); /* root ignores modes: change user */
    wait_child(spawn(open_as_another_user, NULL));
    CHECK_OK(shmq_remove(perm_name));
    puts("ok refused_access_is_permission");
}

static void garbage_magic_is_corrupt_and_other_version_incompatible(void) {
    const char *name = unique_name("corrupt");
    create_queue(name, SHMQ_MODE_MPSC, 1 << 12, 256);
    uint64_t garbage = 0x0123456789abcdefULL;
    poke_segment(name, 0, &garbage, sizeof garbage); /* identity.magic */
    shmq_producer *p;
    shmq_consumer *c;
    CHECK_RC(shmq_producer_open(name, &p), SHMQ_ERR_CORRUPT);
    CHECK_RC(shmq_consumer_open(name, &c), SHMQ_ERR_CORRUPT);
    CHECK_OK(shmq_remove(name));

    const char *v = unique_name("version");
    create_queue(v, SHMQ_MODE_MPSC, 1 << 12, 256);
    uint32_t version = 99;
    poke_segment(v, 8, &version, sizeof version); /* identity.layout_version */
    CHECK_RC(shmq_producer_open(v, &p), SHMQ_ERR_INCOMPATIBLE);
    CHECK_RC(shmq_consumer_open(v, &c), SHMQ_ERR_INCOMPATIBLE);
    CHECK_OK(shmq_remove(v));
    puts("ok garbage_magic_is_corrupt_and_other_version_incompatible");
}

static const char *io_name;

static void open_without_file_descriptors(void *arg) {
    (void)arg;
    /* Only 0, 1 and 2 may be open: shm_open fails with EMFILE. */
    for (int fd = 3; fd < 1024; fd++) close(fd);
    struct rlimit rl = {3, 3};
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    shmq_producer *p;
    errno = 0;
    CHECK_RC(shmq_producer_open(io_name, &p), SHMQ_ERR_IO);
    CHECK(errno == 0);
}

static void other_os_errors_are_io(void) {
    io_name = unique_name("io");
    create_queue(io_name, SHMQ_MODE_MPSC, 1 << 12, 256);
    wait_child(spawn(open_without_file_descriptors, NULL));
    CHECK_OK(shmq_remove(io_name));
    puts("ok other_os_errors_are_io");
}

int main(void) {
    check_init();
    abi_version_matches_header();
    options_init_sets_the_defaults();
    create_open_remove_round_trip();
    missing_queue_is_not_found();
    bad_names_and_options_are_invalid();
    permissions_are_applied_exactly();
    second_consumer_and_second_spsc_producer_are_busy();
    set_wait_accepts_the_three_policies();
    strerror_answers_every_code();
    errno_is_preserved();
    removed_queue_is_closed_after_draining();
    refused_access_is_permission();
    garbage_magic_is_corrupt_and_other_version_incompatible();
    other_os_errors_are_io();
    puts("lifecycle: all passed");
    return 0;
}
