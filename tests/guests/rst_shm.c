/* Shared anonymous memory between a parent and a child, across a
 * restore.
 *
 * argv[1]: a directory. The parent maps 3 pages MAP_SHARED|MAP_ANONYMOUS,
 * writes a marker in the last page and forks. 60 times, 20 ms apart
 * (nanosleep(2)), the child increments a counter in the first page and
 * writes one byte to a pipe; for each byte the parent reads the counter
 * and writes "shared N" through its fd's offset to DIR/ticks. Then the
 * parent writes the counter to the second page, the child (waiting for a
 * last byte) copies it to DIR/out with the marker it sees, and the
 * parent reaps it and appends to DIR/ticks what a read(2) through its
 * memfd's fd (seeked to 4 before the fork) gives: text it wrote into the
 * memfd through a mapping; exit 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[4096], tmp[4096];
	int up[2], down[2];
	if (argc < 2 || pipe(up) != 0 || pipe(down) != 0)
		return 2;
	volatile long *shared = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 3;
	strcpy((char *)shared + 2 * 4096, "marker-from-parent");
	int mfd = memfd_create("rst-memfd", 0);
	if (mfd < 0 || ftruncate(mfd, 4096) != 0)
		return 3;
	char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (m == MAP_FAILED)
		return 3;
	strcpy(m, "0123memfd-content");
	lseek(mfd, 4, SEEK_SET);
	pid_t kid = fork();
	if (kid == 0) {
		for (int i = 1; i <= 60; i++) {
			struct timespec ts = {0, 20 * 1000 * 1000};
			while (nanosleep(&ts, &ts) != 0)
				;
			shared[0] = i;
			if (write(up[1], "x", 1) != 1)
				_exit(4);
		}
		char c;
		if (read(down[0], &c, 1) != 1)
			_exit(5);
		snprintf(path, sizeof path, "%s/out", argv[1]);
		FILE *out = fopen(path, "w");
		fprintf(out, "child saw %ld and %s\n", shared[512], (char *)shared + 2 * 4096);
		fclose(out);
		_exit(0);
	}
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", argv[1]);
	snprintf(path, sizeof path, "%s/pid", argv[1]);
	FILE *f = fopen(tmp, "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename(tmp, path);
	snprintf(path, sizeof path, "%s/ticks", argv[1]);
	FILE *t = fopen(path, "w");
	setvbuf(t, NULL, _IONBF, 0);
	for (int i = 1; i <= 60; i++) {
		char c;
		if (read(up[0], &c, 1) != 1)
			return 6;
		fprintf(t, "shared %ld\n", shared[0]);
	}
	shared[512] = shared[0] * 100;
	if (write(down[1], "y", 1) != 1)
		return 7;
	int status;
	if (waitpid(kid, &status, 0) != kid || status != 0)
		return 8;
	char buf[32] = {0};
	if (read(mfd, buf, 13) != 13)
		return 9;
	fprintf(t, "memfd %s\n", buf);
	return 0;
}
