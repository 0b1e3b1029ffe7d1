/* A FIFO opened by path, read end and write end separately (read end
 * O_NONBLOCK), with data buffered: after the restore both fds are the
 * same FIFO again (what is written reaches the reader, after the data
 * that was buffered) and the path is still a FIFO. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	const char *path = zdtm_path("fifo");
	zdtm_syscall(mkfifo(path, 0600) == 0, "mkfifo");
	int r = open(path, O_RDONLY | O_NONBLOCK);
	zdtm_syscall(r >= 0, "open read end");
	int w = open(path, O_WRONLY);
	zdtm_syscall(w >= 0, "open write end");
	zdtm_syscall(write(w, "buffered ", 9) == 9, "write");
	zdtm_checkpoint_here();
	zdtm_check(fcntl(r, F_GETFL) & O_NONBLOCK, "the read end lost O_NONBLOCK");
	zdtm_check((fcntl(w, F_GETFL) & O_ACCMODE) == O_WRONLY, "the write end is not O_WRONLY");
	zdtm_syscall(write(w, "after", 5) == 5, "write after the restore");
	char buf[32] = {0};
	ssize_t n = read(r, buf, sizeof buf - 1);
	zdtm_check(n == 14 && strcmp(buf, "buffered after") == 0, "read %zd bytes: '%s'", n, buf);
	struct stat a, b;
	zdtm_syscall(fstat(r, &a) == 0 && stat(zdtm_path("fifo"), &b) == 0, "stat");
	zdtm_check(S_ISFIFO(a.st_mode) && a.st_ino == b.st_ino, "the fd is not the FIFO at its path");
	zdtm_pass();
}
