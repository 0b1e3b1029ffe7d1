/* Process scaling: forks P children at once; each does one stat(PATH) and
 * exits. The parent then reaps them all and checks their statuses.
 * Prints wall-clock µs per process (fork to reap, divided by P).
 * Usage: procs P [PATH] */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench.h"

int main(int argc, char **argv)
{
	long p = arg_count(argc, argv, 1, 10);
	const char *path = argc > 2 ? argv[2] : "/etc/passwd";
	double t0 = now_ns();
	for (long i = 0; i < p; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			struct stat st;
			_exit(stat(path, &st) == 0 ? 0 : 1);
		}
	}
	int bad = 0, status;
	for (long i = 0; i < p; i++) {
		if (wait(&status) < 0)
			die("wait");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			bad++;
	}
	double t1 = now_ns();
	if (bad) {
		fprintf(stderr, "procs: %d children failed\n", bad);
		return 1;
	}
	printf("%.2f us/proc\n", (t1 - t0) / 1e3 / (double)p);
	return 0;
}
