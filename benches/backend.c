/* A minimal HTTP backend for health checks: accepts, reads the request, answers
 * "200 OK" and closes. A TCP check (connect, then reset) costs it one accept.
 * Usage: backend IP PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: backend IP PORT\n"); return 2; }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) { fprintf(stderr, "bad IP\n"); return 2; }
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0) { perror("listen"); return 1; }
    static const char resp[] = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n";
    struct timeval tv = { .tv_sec = 1 };
    char buf[2048];
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (recv(c, buf, sizeof buf, 0) > 0) {
            ssize_t w = send(c, resp, sizeof resp - 1, MSG_NOSIGNAL);
            (void)w;
        }
        close(c);
    }
}
