/* Trapped open plus close: N open(PATH)+close() pairs; prints µs per pair.
 * Usage: openclose [N] [PATH]   (default PATH: /etc/passwd) */
#include <fcntl.h>
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1, 100000);
	const char *path = argc > 2 ? argv[2] : "/etc/passwd";
	for (int i = 0; i < 100; i++) { /* warm-up */
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || close(fd) != 0)
			die(path);
	}
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || close(fd) != 0)
			die(path);
	}
	double t1 = now_ns();
	printf("%.3f us/call\n", (t1 - t0) / 1e3 / (double)n);
	return 0;
}
