/* A self-checking counter for restore tests.
 *
 * argv[1]: output file (opened once, O_TRUNC, not O_APPEND: each line goes
 * through the fd's offset, so a restore must bring the offset back).
 * argv[2]: a pid file, written (write + rename) once counting started.
 * argv[3] (optional): exit with status 7 after printing this count.
 *
 * State lives in a global (.bss/.data), in small brk-heap blocks and in one
 * large mmap'd malloc block. Each iteration checks all of it against
 * checksums kept in the global, grows the heap a little (brk after a
 * restore), prints "ok N" (or "BAD N what") and sleeps 100 ms. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "pidfile.h"

#define SMALL 64
#define SMALL_SIZE 1000
#define BIG_SIZE (4 << 20)

static unsigned long counter;
static char tag[32] = "rst-global-tag";
static unsigned char *small[SMALL];
static unsigned char *big;
static unsigned long grown;
static unsigned long sums[SMALL + 1];

static unsigned long sum(const unsigned char *p, size_t n)
{
	unsigned long s = 1469598103934665603ul;
	for (size_t i = 0; i < n; i++)
		s = (s ^ p[i]) * 1099511628211ul;
	return s;
}

static const char *check(void)
{
	if (strcmp(tag, "rst-global-tag") != 0)
		return "global";
	for (int i = 0; i < SMALL; i++)
		if (sum(small[i], SMALL_SIZE) != sums[i])
			return "heap";
	if (sum(big, BIG_SIZE) != sums[SMALL])
		return "big";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	unsigned long limit = argc > 3 ? strtoul(argv[3], NULL, 10) : 0;
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return 3;
	for (int i = 0; i < SMALL; i++) {
		small[i] = malloc(SMALL_SIZE);
		for (int j = 0; j < SMALL_SIZE; j++)
			small[i][j] = (unsigned char)(i * 31 + j * 7);
		sums[i] = sum(small[i], SMALL_SIZE);
	}
	big = malloc(BIG_SIZE);
	for (int j = 0; j < BIG_SIZE; j++)
		big[j] = (unsigned char)(j * 13 + 5);
	sums[SMALL] = sum(big, BIG_SIZE);

	if (write_pid_file(argv[2]) != 0)
		return 4;

	for (;;) {
		counter++;
		/* Heap growth that needs brk to work after a restore. */
		void *more = malloc(16384);
		if (more) {
			memset(more, 0x5a, 16384);
			grown++;
		}
		const char *bad = check();
		char line[128];
		int n = bad ? snprintf(line, sizeof line, "BAD %lu %s\n", counter, bad)
			    : snprintf(line, sizeof line, "ok %lu\n", counter);
		if (write(fd, line, n) != n)
			return 5;
		if (counter == limit)
			return 7;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
