/* A guest for post-copy and the live host (issues #3 and #6): it looks a
 * path up, every tick, from a page it wrote once, so that after a
 * post-copy restore the page is still missing when the supervisor reads
 * the path (and writes its rewrite into the scratch region, whose pages
 * are held missing too).
 *
 * argv: OUT PIDFILE PATH MIB
 * Maps and fills MIB MiB of anonymous memory (pages for post-copy to hold),
 * copies PATH into a page of its own, then every 10 ms writes
 * "ok N access E stat E" to OUT through one fd, where E is 0 when
 * access(PATH, F_OK), resp. stat(PATH), succeeded and the errno otherwise.
 * It never touches the page holding PATH again: only the supervisor and
 * the kernel read it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "pidfile.h"

int main(int argc, char **argv)
{
	if (argc < 5 || strlen(argv[3]) >= 4096)
		return 2;
	size_t len = strtoul(argv[4], NULL, 10) << 20;
	int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *path = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (out < 0 || mem == MAP_FAILED || path == MAP_FAILED)
		return 3;
	for (size_t i = 0; i < len; i += 4096)
		mem[i] = (char)(i >> 12 | 1);
	strcpy(path, argv[3]);

	if (write_pid_file(argv[2]) != 0)
		return 4;

	for (unsigned long tick = 1;; tick++) {
		struct stat st;
		int a = access(path, F_OK) ? errno : 0;
		int s = stat(path, &st) ? errno : 0;
		char line[96];
		int n = snprintf(line, sizeof line, "ok %lu access %d stat %d\n",
				 tick, a, s);
		if (write(out, line, n) != n)
			return 5;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}
