/* Thread scaling: T threads each doing K stat(PATH) calls, all released
 * together by a barrier. Prints wall-clock µs per stat over all threads:
 * (last thread's end - first thread's start) / (T*K). Each thread takes its
 * own timestamps, so thread creation and joining are outside the timing.
 * Usage: threads T K [PATH] */
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include "bench.h"

static pthread_barrier_t start;
static long k;
static const char *path = "/etc/passwd";

struct span {
	double start, end;
};

static void *worker(void *arg)
{
	struct span *span = arg;
	struct stat st;
	pthread_barrier_wait(&start);
	span->start = now_ns();
	for (long i = 0; i < k; i++)
		if (stat(path, &st) != 0)
			die(path);
	span->end = now_ns();
	return NULL;
}

int main(int argc, char **argv)
{
	long t = arg_count(argc, argv, 1, 4);
	k = arg_count(argc, argv, 2, 1000);
	if (argc > 3)
		path = argv[3];
	pthread_t *tids = calloc((size_t)t, sizeof(*tids));
	struct span *spans = calloc((size_t)t, sizeof(*spans));
	pthread_attr_t attr;
	if (tids == NULL || spans == NULL)
		die("calloc");
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_barrier_init(&start, NULL, (unsigned)t + 1);
	for (long i = 0; i < t; i++) {
		int err = pthread_create(&tids[i], &attr, worker, &spans[i]);
		if (err != 0) {
			fprintf(stderr, "pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	pthread_barrier_wait(&start);
	for (long i = 0; i < t; i++)
		pthread_join(tids[i], NULL);
	double t0 = spans[0].start, t1 = spans[0].end;
	for (long i = 1; i < t; i++) {
		t0 = spans[i].start < t0 ? spans[i].start : t0;
		t1 = spans[i].end > t1 ? spans[i].end : t1;
	}
	printf("%.3f us/call\n", (t1 - t0) / 1e3 / (double)(t * k));
	return 0;
}
