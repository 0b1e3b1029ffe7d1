/* A log file opened once (no O_APPEND) before fork(2), so parent and
 * child share one open file and one offset, as with `cmd >log 2>&1`:
 * after the restore each writes a line in turn and no line overwrites
 * another (they share the offset again), and stdout and stderr of the
 * child, dup2()ed onto the same file, share it too. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int log = open(zdtm_path("log"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	zdtm_syscall(log >= 0, "open");
	zdtm_syscall(write(log, "start\n", 6) == 6, "write");
	int turn[2], done[2];
	zdtm_syscall(pipe(turn) == 0 && pipe(done) == 0, "pipe");
	pid_t kid = fork();
	if (kid == 0) {
		if (dup2(log, 1) != 1 || dup2(log, 2) != 2)
			_exit(2);
		if (write(done[1], "r", 1) != 1)
			_exit(3);
		char c;
		if (read(turn[0], &c, 1) != 1)
			_exit(4);
		if (write(1, "child out\n", 10) != 10 || write(2, "child err\n", 10) != 10)
			_exit(5);
		_exit(write(done[1], "d", 1) == 1 ? 0 : 6);
	}
	char c;
	zdtm_syscall(read(done[0], &c, 1) == 1, "read");
	zdtm_checkpoint_here();
	zdtm_syscall(write(log, "parent 1\n", 9) == 9, "write");
	zdtm_syscall(write(turn[1], "t", 1) == 1, "write");
	zdtm_syscall(read(done[0], &c, 1) == 1, "read");
	zdtm_syscall(write(log, "parent 2\n", 9) == 9, "write");
	zdtm_reap_ok(kid, "the child");
	char buf[256] = {0};
	int fd = open(zdtm_path("log"), O_RDONLY);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	const char *want = "start\nparent 1\nchild out\nchild err\nparent 2\n";
	zdtm_check(n == (ssize_t)strlen(want) && strcmp(buf, want) == 0, "the log holds:\n%s", buf);
	zdtm_pass();
}
