/* A parent and a child joined by a pipe, for restore tests of process
 * trees: its output is the same whether it runs through or is
 * checkpointed and restored mid-run.
 *
 * argv[1]: a directory; argv[2]: how many numbers (default 60).
 * The child puts itself in its own process group, then writes "n N\n"
 * for N = 1..count into the pipe, 20 ms apart (nanosleep(2)), and exits
 * with status 3. The parent reads the pipe to EOF, writing "got N" lines
 * through its fd's offset to DIR/out, reaps the child with waitpid(2)
 * and appends "child exited 3". DIR/pid appears once both run. At the
 * end each side writes what it saw of itself at its start and now:
 * DIR/ids.parent "pid P P", "sid S S", "pgid G G" and DIR/ids.child
 * "pid", "ppid", "pgid", "sid" (start, end). Exit status 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dir;

static FILE *open_out(const char *name, const char *mode)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, mode);
	if (!f) {
		perror(path);
		exit(3);
	}
	return f;
}

static void child(int wfd, int count)
{
	setpgid(0, 0);
	int pid = getpid(), ppid = getppid(), pgid = getpgid(0), sid = getsid(0);
	char line[32];
	for (int i = 1; i <= count; i++) {
		int n = snprintf(line, sizeof line, "n %d\n", i);
		if (write(wfd, line, n) != n)
			_exit(4);
		struct timespec ts = {0, 20 * 1000 * 1000};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	FILE *f = open_out("ids.child", "w");
	fprintf(f, "pid %d %d\nppid %d %d\npgid %d %d\nsid %d %d\n", pid, getpid(), ppid,
		getppid(), pgid, getpgid(0), sid, getsid(0));
	fclose(f);
	_exit(3);
}

int main(int argc, char **argv)
{
	int fds[2], status = 0;
	if (argc < 2)
		return 2;
	dir = argv[1];
	int count = argc > 2 ? atoi(argv[2]) : 60;
	int pid = getpid(), sid = getsid(0), pgid = getpgid(0);
	if (pipe(fds) != 0)
		return 5;
	pid_t kid = fork();
	if (kid == 0) {
		close(fds[0]);
		child(fds[1], count);
	}
	close(fds[1]);
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", dir);
	snprintf(path, sizeof path, "%s/pid", dir);
	FILE *p = fopen(tmp, "w");
	fprintf(p, "%d\n", pid);
	fclose(p);
	rename(tmp, path);
	FILE *out = open_out("out", "w");
	setvbuf(out, NULL, _IONBF, 0);
	FILE *in = fdopen(fds[0], "r");
	int n;
	while (fscanf(in, "n %d\n", &n) == 1)
		fprintf(out, "got %d\n", n);
	if (waitpid(kid, &status, 0) != kid)
		return 6;
	fprintf(out, "child exited %d\n", WEXITSTATUS(status));
	FILE *f = open_out("ids.parent", "w");
	fprintf(f, "pid %d %d\nsid %d %d\npgid %d %d\n", pid, getpid(), sid, getsid(0), pgid,
		getpgid(0));
	fclose(f);
	return 0;
}
