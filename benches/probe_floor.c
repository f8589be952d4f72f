/* The floor for probing: the least a prober can do for the same checks gtmd runs in the
 * probe_scale benchmark. One thread, one epoll set, no jitter, no bookkeeping: every member is
 * probed once per interval on a fresh non-blocking connection that is closed with a reset
 * (SO_LINGER 0). HTTP members send one GET and wait for a "200" status line; TCP members only
 * connect. It prints the number of completed probes once a second.
 *
 * Usage: probe_floor IP MEMBERS HTTP_PORTS TCP_PORTS   (ports comma-separated)
 * The first half of the members are HTTP, the second half TCP; interval 1 s, timeout 500 ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INTERVAL_US 1000000LL
#define TIMEOUT_US 500000LL

enum { IDLE, CONNECTING, SENT };

struct member {
    struct sockaddr_in addr;
    int http, fd, state;
    long long due, deadline;
};

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static int parse_ports(char *s, int *out, int max) {
    int n = 0;
    for (char *p = strtok(s, ","); p && n < max; p = strtok(NULL, ","))
        out[n++] = atoi(p);
    return n;
}

static const char REQ[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s IP MEMBERS HTTP_PORTS TCP_PORTS\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]), hp[256], tp[256];
    int nh = parse_ports(argv[3], hp, 256), nt = parse_ports(argv[4], tp, 256);
    if (n < 2 || nh < 1 || nt < 1)
        return 2;
    struct member *m = calloc(n, sizeof *m);
    long long start = now_us();
    for (int i = 0; i < n; i++) {
        m[i].http = i < n / 2;
        m[i].addr.sin_family = AF_INET;
        inet_pton(AF_INET, argv[1], &m[i].addr.sin_addr);
        m[i].addr.sin_port = htons(m[i].http ? hp[i % nh] : tp[(i - n / 2) % nt]);
        m[i].fd = -1;
        m[i].due = start + INTERVAL_US * i / n;
    }
    int ep = epoll_create1(0);
    struct linger rst = {1, 0};
    struct epoll_event evs[256];
    unsigned long long done = 0;
    int next = 0; /* members fall due in index order, cyclically */
    long long last_print = start, last_sweep = start;

    for (;;) {
        long long t = now_us();
        while (m[next].due <= t) {
            struct member *x = &m[next];
            x->due += INTERVAL_US;
            if (x->state == IDLE) {
                x->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                setsockopt(x->fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
                if (connect(x->fd, (struct sockaddr *)&x->addr, sizeof x->addr) < 0 &&
                    errno != EINPROGRESS) {
                    close(x->fd);
                } else {
                    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = next};
                    epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &e);
                    x->state = CONNECTING;
                    x->deadline = t + TIMEOUT_US;
                }
            }
            next = (next + 1) % n;
        }
        long long wait = (m[next].due - t + 999) / 1000;
        int k = epoll_wait(ep, evs, 256, wait > 50 ? 50 : (int)wait);
        for (int i = 0; i < k; i++) {
            struct member *x = &m[evs[i].data.u32];
            int finished = 0, err = 0;
            socklen_t len = sizeof err;
            if (x->state == CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || !x->http) {
                    finished = 1;
                    done += !err;
                } else if (send(x->fd, REQ, sizeof REQ - 1, MSG_NOSIGNAL) < 0) {
                    finished = 1;
                } else {
                    x->state = SENT;
                }
            }
            if (x->state == SENT && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                char buf[1024];
                ssize_t r = recv(x->fd, buf, sizeof buf - 1, 0);
                if (r > 0) {
                    buf[r] = 0;
                    done += strncmp(buf + 8, " 200", 4) == 0;
                    finished = 1;
                } else if (r == 0 || errno != EAGAIN) {
                    finished = 1;
                }
            }
            if (finished) {
                close(x->fd);
                x->fd = -1;
                x->state = IDLE;
            }
        }
        t = now_us();
        if (t - last_sweep >= 50000) {
            last_sweep = t;
            for (int i = 0; i < n; i++)
                if (m[i].state != IDLE && m[i].deadline < t) {
                    close(m[i].fd);
                    m[i].fd = -1;
                    m[i].state = IDLE;
                }
        }
        if (t - last_print >= 1000000) {
            last_print = t;
            printf("%llu\n", done);
            fflush(stdout);
        }
    }
}
