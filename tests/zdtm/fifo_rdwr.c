/* A FIFO opened O_RDWR (Linux allows it: fifo(7)) by one process with
 * data in it, and read by a child through an inherited fd after the
 * restore. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	const char *path = zdtm_path("fifo");
	zdtm_syscall(mkfifo(path, 0600) == 0, "mkfifo");
	int fd = open(path, O_RDWR);
	zdtm_syscall(fd >= 0, "open O_RDWR");
	zdtm_syscall(write(fd, "0123456789", 10) == 10, "write");
	zdtm_checkpoint_here();
	pid_t kid = fork();
	if (kid == 0) {
		char buf[16] = {0};
		_exit(read(fd, buf, 10) == 10 && strcmp(buf, "0123456789") == 0 ? 0 : 1);
	}
	zdtm_reap_ok(kid, "the child reading the FIFO");
	zdtm_check((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, "not O_RDWR");
	zdtm_pass();
}
