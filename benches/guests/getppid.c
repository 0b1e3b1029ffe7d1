/* Untrapped syscall: N raw getppid() calls; prints ns per call.
 * Uses syscall(2) so that no libc caching can skip the kernel entry.
 * Usage: getppid [N] */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1, 2000000);
	for (int i = 0; i < 1000; i++) /* warm-up */
		syscall(SYS_getppid);
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (syscall(SYS_getppid) < 0)
			die("getppid");
	double t1 = now_ns();
	printf("%.2f ns/call\n", (t1 - t0) / (double)n);
	return 0;
}
