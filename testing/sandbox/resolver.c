/* A pod's resolver loop, built twice by testing/sandbox/pod.py: with gcc against glibc and
 * with musl-gcc (Debian musl-tools) as a static musl program, so the same loop measures
 * both libcs' stub resolvers with the pod's /etc/resolv.conf.
 *
 *   resolver INTERVAL_MS NAME=IPV4 [NAME=IPV4 ...]
 *
 * Looks the names up in turn with getaddrinfo(NAME, AF_INET) every INTERVAL_MS (the time
 * a lookup took is subtracted), forever, and writes one line per lookup on stdout (line
 * buffered, so a reader sees every finished lookup and a kill loses none):
 *
 *   START_NS SECONDS_NS STATUS
 *
 * START_NS: CLOCK_MONOTONIC when the lookup began (Python's time.monotonic() reads the
 * same clock); STATUS: 0 answered with IPV4, 1 answered without it, else getaddrinfo's
 * EAI_* code (negative in both libcs).
 */
#define _POSIX_C_SOURCE 200809L
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct target {
    char *name;
    struct in_addr want;
};

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int lookup(const struct target *t) {
    struct addrinfo hints, *res = NULL, *ai;
    int rc, found = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(t->name, NULL, &hints, &res);
    if (rc != 0)
        return rc;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        if (sin->sin_addr.s_addr == t->want.s_addr)
            found = 1;
    }
    freeaddrinfo(res);
    return found ? 0 : 1;
}

int main(int argc, char **argv) {
    struct target *targets;
    long long interval, start, took;
    int count, i;
    if (argc < 3) {
        fprintf(stderr, "usage: %s INTERVAL_MS NAME=IPV4 [NAME=IPV4 ...]\n", argv[0]);
        return 2;
    }
    interval = atoll(argv[1]) * 1000000LL;
    count = argc - 2;
    targets = calloc((size_t)count, sizeof *targets);
    if (targets == NULL)
        return 2;
    for (i = 0; i < count; i++) {
        char *eq = strchr(argv[i + 2], '=');
        if (eq == NULL || inet_pton(AF_INET, eq + 1, &targets[i].want) != 1) {
            fprintf(stderr, "%s: expected NAME=IPV4\n", argv[i + 2]);
            return 2;
        }
        *eq = '\0';
        targets[i].name = argv[i + 2];
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (i = 0;; i = (i + 1) % count) {
        int status;
        start = now_ns();
        status = lookup(&targets[i]);
        took = now_ns() - start;
        printf("%lld %lld %d\n", start, took, status);
        if (took < interval) {
            struct timespec pause = {0, (long)(interval - took)};
            nanosleep(&pause, NULL);
        }
    }
}
