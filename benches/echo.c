/* The floor: a UDP responder that echoes each datagram with the QR bit set, using
 * recvmmsg/sendmmsg in batches of 32. It does the kernel's share of answering a query
 * and nothing else. Usage: echo PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 32
#define BUF 4096

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: echo PORT\n"); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    static char bufs[BATCH][BUF];
    static struct sockaddr_storage addrs[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i]; iov[i].iov_len = BUF;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            iov[i].iov_len = msgs[i].msg_len;
            if (msgs[i].msg_len > 2) bufs[i][2] |= 0x80;
        }
        int sent = 0;
        while (sent < n) {
            int m = sendmmsg(fd, msgs + sent, n - sent, 0);
            if (m <= 0) { sent++; continue; }
            sent += m;
        }
    }
}
