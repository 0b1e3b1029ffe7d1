/* Thread A opens the path in a shared buffer over and over while thread B
 * keeps flipping the buffer between a path the policy redirects and one it
 * would refuse. Prints how many opens read each file's content. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>

static char buf[4096];
static const char *pub_path, *secret_path;
static atomic_int stop;

static void *flipper(void *arg) {
    (void)arg;
    size_t np = strlen(pub_path), ns = strlen(secret_path);
    while (!atomic_load(&stop)) {
        memcpy(buf, secret_path, ns + 1);
        memcpy(buf, pub_path, np + 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    pub_path = argv[1];
    secret_path = argv[2];
    int rounds = atoi(argv[3]);
    strcpy(buf, pub_path);
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    int priv = 0, secret = 0, denied = 0, other = 0;
    for (int i = 0; i < rounds; i++) {
        int fd = open(buf, O_RDONLY);
        if (fd < 0) { if (errno == EACCES) denied++; else other++; continue; }
        char c[16] = {0};
        ssize_t n = read(fd, c, sizeof c - 1);
        close(fd);
        if (n > 0 && strncmp(c, "private", 7) == 0) priv++;
        else if (n > 0 && strncmp(c, "secret", 6) == 0) secret++;
        else other++;
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    /* The scratch region must be out of reach. */
    int unmap = munmap((void *)0x10000, 4096) == 0 ? 0 : errno;
    int prot = mprotect((void *)0x10000, 4096, PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
    printf("private=%d secret=%d denied=%d other=%d munmap_errno=%d mprotect_errno=%d\n",
           priv, secret, denied, other, unmap, prot);
    return 0;
}
