/* A process that keeps touching memory it never touched before, for the
 * consistency of copy-before-write snapshots across their pause
 * (tests/snapshot_uffd.rs): pages a snapshot's first protection never saw
 * must be known at its pause, and pages written just before the pause
 * must be protected again by it.
 *
 * argv[1]: a directory; argv[2]: N, pages in the region (never touched
 * before the writer reaches them).
 *
 * A writer thread takes a step every ~100 us (spinning on the clock, no
 * system call), step n = 1, 2, ... up to N-1 (6.5 s for 65536):
 *   A[n] = n       (the first touch of page n of the region),
 *   A[n-1] = n     (page n-1 written again),
 *   B = n          (a page touched at the start).
 * A[i] is the first word of page i. At any instant, with h = B:
 * A[i] = i+1 for i < h, A[h] is h or h+1, A[h+1] is 0 or h+1, and every
 * later page is untouched (0).
 *
 * DIR/region gets "a=0x.. b=0x.. pages=N" and DIR/pid the pid once the
 * writer has taken its first steps. DIR/exit stops it; the process then
 * prints "steps H" and exits 0. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "put.h"

static volatile uint64_t *b;
static volatile unsigned char *a;
static size_t pages, page;
static volatile int stop;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile uint64_t *word(size_t i)
{
	return (volatile uint64_t *)(a + i * page);
}

static void *writer(void *arg)
{
	(void)arg;
	int64_t next = now_ns();
	for (uint64_t n = 1; n < pages && !stop; n++) {
		while (now_ns() < next)
			;
		next += 100000;
		*word(n) = n;
		*word(n - 1) = n;
		*b = n;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	char text[128], path[4096];
	if (argc < 3)
		return 2;
	pages = (size_t)atol(argv[2]);
	page = (size_t)sysconf(_SC_PAGESIZE);
	a = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return 4;
	*b = 0;
	*word(0) = 1;
	snprintf(text, sizeof text, "a=%p b=%p pages=%zu\n", (void *)a, (void *)b, pages);
	put(argv[1], "region", text);
	pthread_create(&th, NULL, writer, NULL);
	while (*b < 10)
		usleep(1000);
	snprintf(text, sizeof text, "%d\n", getpid());
	put(argv[1], "pid", text);
	snprintf(path, sizeof path, "%s/exit", argv[1]);
	while (access(path, F_OK) != 0)
		usleep(2000);
	stop = 1;
	pthread_join(th, NULL);
	printf("steps %llu\n", (unsigned long long)*b);
	return 0;
}
