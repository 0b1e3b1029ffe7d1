/* A group for benches/checkpoint.sh to checkpoint: builds state, writes
 * READY (argv[1]) once it is in place, then waits (in pause(2) or a futex)
 * until killed.
 *
 *   ckpt_hold READY mem MIB       MIB of anonymous memory, every page touched
 *   ckpt_hold READY threads N     N threads blocked in pthread_cond_wait
 *   ckpt_hold READY procs N       N child processes blocked in pause()
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;)
		pthread_cond_wait(&cv, &mu);
	return NULL;
}

static void ready(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fprintf(f, "%d\n", getpid());
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	long n = atol(argv[3]);
	if (!strcmp(argv[2], "mem")) {
		size_t len = (size_t)n << 20;
		unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		for (size_t i = 0; i < len; i += 4096)
			p[i] = (unsigned char)(i >> 12) | 1;
	} else if (!strcmp(argv[2], "threads")) {
		for (long i = 0; i < n; i++) {
			pthread_t t;
			if (pthread_create(&t, NULL, waiter, NULL))
				return 1;
		}
	} else if (!strcmp(argv[2], "procs")) {
		for (long i = 0; i < n; i++) {
			pid_t c = fork();
			if (c == 0)
				for (;;)
					pause();
			if (c < 0)
				return 1;
		}
	} else {
		return 2;
	}
	ready(argv[1]);
	for (;;)
		pause();
}
