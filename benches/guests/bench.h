/* Shared helpers for the benchmark guests.
 *
 * Each guest times only its own loop (CLOCK_MONOTONIC), so process start-up
 * and the supervisor's spawn cost are excluded, and prints exactly one line
 * on stdout: "<value> <unit>". benches/run.sh reads the first field.
 * A failing syscall is a correctness failure: the guest exits 1, and the
 * script reports FAIL instead of a figure. */
#ifndef ISOTRACE_BENCH_H
#define ISOTRACE_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Parses argv[i] as a positive count, or returns dflt when absent. */
static inline long arg_count(int argc, char **argv, int i, long dflt)
{
	if (argc <= i)
		return dflt;
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end != '\0' || v <= 0) {
		fprintf(stderr, "%s: bad count '%s'\n", argv[0], argv[i]);
		exit(2);
	}
	return v;
}

static inline void die(const char *what)
{
	perror(what);
	exit(1);
}

#endif
