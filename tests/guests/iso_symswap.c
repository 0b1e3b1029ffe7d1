/* A symlink-swap race against path rewriting (the namespace gate).
 *
 * argv[1]: a work directory W; argv[2]: a victim directory V holding a
 * file f; argv[3]: iterations.
 * W/d is made a directory holding f. One thread chmods W/d/f over and
 * over; the other keeps replacing the directory W/d by a symlink to V and
 * back (rename away, symlink, unlink, rename back). A supervisor that
 * resolved W/d/f while d was a directory, and let the kernel walk the
 * rewritten path after d became a symlink, would chmod V/f itself.
 * Prints how many chmods succeeded and exits 0. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char d[4096], x[4096], f[4096], victim[4096];
static long iterations;
static volatile int done;

static void *chmodder(void *arg)
{
	long ok = 0;
	(void)arg;
	while (!done) {
		if (chmod(f, 0600) == 0)
			ok++;
		chmod(f, 0640);
	}
	return (void *)ok;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: iso_symswap W V N\n");
		return 2;
	}
	snprintf(d, sizeof d, "%s/d", argv[1]);
	snprintf(x, sizeof x, "%s/x", argv[1]);
	snprintf(f, sizeof f, "%s/d/f", argv[1]);
	snprintf(victim, sizeof victim, "%s", argv[2]);
	iterations = atol(argv[3]);
	if (mkdir(d, 0755) != 0 && errno != EEXIST) {
		perror("mkdir");
		return 1;
	}
	int fd = open(f, O_CREAT | O_WRONLY, 0644);
	if (fd < 0) {
		perror("create W/d/f");
		return 1;
	}
	close(fd);
	pthread_t t;
	pthread_create(&t, NULL, chmodder, NULL);
	for (long i = 0; i < iterations; i++) {
		if (rename(d, x) != 0) {
			perror("rename d x");
			break;
		}
		if (symlink(victim, d) != 0)
			perror("symlink");
		unlink(d);
		if (rename(x, d) != 0) {
			perror("rename x d");
			break;
		}
	}
	done = 1;
	void *ok;
	pthread_join(t, &ok);
	printf("chmods %ld\n", (long)ok);
	return 0;
}
