/* A multi-threaded process for restore tests: its output is the same
 * whether it runs through or is checkpointed and restored mid-run.
 *
 * argv[1]: a directory; argv[2]: how far each worker counts (default 40);
 * argv[3]: how many waiter threads (default 1, at most 120).
 * Three workers count 1..N, each writing "wK NNNN\n" lines through its own
 * fd's offset (DIR/out.K, so a restore must bring the offset back) and
 * sleeping 30 ms in nanosleep(2) between lines. A reader thread blocks in
 * read(2) on a pipe and the waiter threads in pthread_cond_wait (a futex).
 * DIR/pid appears (write + rename) once every thread runs. When the
 * workers are joined, main wakes the reader (one byte) and the waiter
 * (cond broadcast), joins them (which needs the kernel's clear_child_tid
 * wake-up), writes DIR/out.main and DIR/ids ("pid P" and "tid K T" for
 * every thread, each as the thread saw itself at start and at the end:
 * "same" or "changed"), and exits 0. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 3
#define MAX_THREADS (WORKERS + 1 + 120)

static const char *dir;
static int limit = 40;
static int nthreads = WORKERS + 2;
static int pipefd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int woken;
static volatile int started;
static int tid_start[MAX_THREADS], tid_end[MAX_THREADS];
static char result[MAX_THREADS][64];

static int open_out(const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		exit(3);
	}
	return fd;
}

static void *worker(void *arg)
{
	long k = (long)arg;
	char name[32], line[32];
	snprintf(name, sizeof name, "out.%ld", k + 1);
	int fd = open_out(name);
	tid_start[k] = gettid();
	__sync_fetch_and_add(&started, 1);
	for (int i = 1; i <= limit; i++) {
		int n = snprintf(line, sizeof line, "w%ld %04d\n", k + 1, i);
		if (write(fd, line, n) != n)
			exit(4);
		struct timespec ts = {0, 30 * 1000 * 1000};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	close(fd);
	tid_end[k] = gettid();
	return NULL;
}

static void *reader(void *arg)
{
	char c = 0;
	tid_start[WORKERS] = gettid();
	__sync_fetch_and_add(&started, 1);
	ssize_t n = read(pipefd[0], &c, 1);
	snprintf(result[WORKERS], 64, "reader got %zd byte '%c'\n", n, c);
	tid_end[WORKERS] = gettid();
	return arg;
}

static void *waiter(void *arg)
{
	long k = (long)arg;
	tid_start[k] = gettid();
	pthread_mutex_lock(&mu);
	__sync_fetch_and_add(&started, 1);
	while (!woken)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	snprintf(result[k], 64, "waiter %ld woke\n", k - WORKERS);
	tid_end[k] = gettid();
	return arg;
}

static void publish_pid(void)
{
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", dir);
	snprintf(path, sizeof path, "%s/pid", dir);
	FILE *f = fopen(tmp, "w");
	if (!f)
		exit(5);
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename(tmp, path);
}

int main(int argc, char **argv)
{
	pthread_t th[MAX_THREADS];
	if (argc < 2)
		return 2;
	dir = argv[1];
	if (argc > 2)
		limit = atoi(argv[2]);
	if (argc > 3 && atoi(argv[3]) >= 1 && atoi(argv[3]) <= 120)
		nthreads = WORKERS + 1 + atoi(argv[3]);
	int pid_start = getpid();
	if (pipe(pipefd) != 0)
		return 3;
	for (long k = 0; k < WORKERS; k++)
		pthread_create(&th[k], NULL, worker, (void *)k);
	pthread_create(&th[WORKERS], NULL, reader, NULL);
	for (long k = WORKERS + 1; k < nthreads; k++)
		pthread_create(&th[k], NULL, waiter, (void *)k);
	while (started < nthreads)
		usleep(1000);
	publish_pid();
	for (int k = 0; k < WORKERS; k++)
		pthread_join(th[k], NULL);
	if (write(pipefd[1], "x", 1) != 1)
		return 6;
	pthread_mutex_lock(&mu);
	woken = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int k = WORKERS; k < nthreads; k++)
		pthread_join(th[k], NULL);
	int fd = open_out("out.main");
	for (int k = WORKERS; k < nthreads; k++)
		dprintf(fd, "%s", result[k]);
	dprintf(fd, "done\n");
	close(fd);
	fd = open_out("ids");
	dprintf(fd, "pid %d %d\n", pid_start, getpid());
	for (int k = 0; k < nthreads; k++)
		dprintf(fd, "tid %d %d\n", tid_start[k], tid_end[k]);
	close(fd);
	return 0;
}
