/* A process with three threads, each blocked in read(2) on its own pipe
 * inside a distinctly named function, for snapshot/core tests.
 *
 * argv[1]: a directory. The guest writes DIR/pid (its pid) once every
 * thread is blocked, then waits until DIR/go exists, wakes its threads by
 * writing one byte to each pipe, joins them and prints "sum 6" and "done".
 * The marker values let tests check captured memory. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int pipes[3][2];
static volatile int blocked;
static int results[3];
/* Known bytes in .data, findable in the image. */
char snap_marker[64] = "isotrace-snapshot-marker-0123456789";

__attribute__((noinline)) static int read_one(int fd)
{
	char c;
	__sync_fetch_and_add(&blocked, 1);
	if (read(fd, &c, 1) != 1)
		return -1;
	return c;
}

__attribute__((noinline)) void blocked_in_alpha(void) { results[0] = read_one(pipes[0][0]); }
__attribute__((noinline)) void blocked_in_beta(void) { results[1] = read_one(pipes[1][0]); }
__attribute__((noinline)) void blocked_in_gamma(void) { results[2] = read_one(pipes[2][0]); }

static void *run(void *arg)
{
	switch ((long)arg) {
	case 0: blocked_in_alpha(); break;
	case 1: blocked_in_beta(); break;
	default: blocked_in_gamma(); break;
	}
	/* Keep the frame above from being a tail call. */
	__asm__ volatile("" ::: "memory");
	return NULL;
}

int main(int argc, char **argv)
{
	char path[4096], tmp[4096];
	pthread_t th[3];
	if (argc < 2)
		return 2;
	for (long i = 0; i < 3; i++) {
		if (pipe(pipes[i]) != 0)
			return 3;
		pthread_create(&th[i], NULL, run, (void *)i);
	}
	while (blocked < 3)
		usleep(1000);
	usleep(20000); /* let the last one enter read() */
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", argv[1]);
	snprintf(path, sizeof path, "%s/pid", argv[1]);
	FILE *f = fopen(tmp, "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename(tmp, path);
	snprintf(path, sizeof path, "%s/go", argv[1]);
	while (access(path, F_OK) != 0)
		usleep(2000);
	for (int i = 0; i < 3; i++)
		if (write(pipes[i][1], &(char){(char)(i + 1)}, 1) != 1)
			return 4;
	int sum = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		sum += results[i];
	}
	printf("sum %d\nmarker %s\ndone\n", sum, snap_marker);
	return 0;
}
