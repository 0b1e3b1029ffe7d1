/* Trapped path syscall: N stat(PATH) calls; prints µs per call.
 * Usage: stat [N] [PATH]   (default PATH: /etc/passwd) */
#include <sys/stat.h>
#include "bench.h"

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1, 200000);
	const char *path = argc > 2 ? argv[2] : "/etc/passwd";
	struct stat st;
	for (int i = 0; i < 100; i++) /* warm-up */
		if (stat(path, &st) != 0)
			die(path);
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (stat(path, &st) != 0)
			die(path);
	double t1 = now_ns();
	printf("%.3f us/call\n", (t1 - t0) / 1e3 / (double)n);
	return 0;
}
