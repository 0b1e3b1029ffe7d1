/* A unix stream socketpair shared by a parent and a child, with bytes
 * queued both ways at the checkpoint: after the restore each side reads
 * what was queued for it, then the child answers and its
 * shutdown(SHUT_WR) gives the parent end-of-file. */
#include "zdtm.h"
#include <sys/socket.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int sv[2], r[2];
	zdtm_syscall(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && pipe(r) == 0, "socketpair");
	zdtm_syscall(write(sv[0], "to child", 8) == 8, "write");
	zdtm_syscall(write(sv[1], "to parent", 9) == 9, "write");
	pid_t kid = fork();
	if (kid == 0) {
		close(sv[0]);
		if (write(r[1], "r", 1) != 1)
			_exit(3);
		zdtm_wait();
		char buf[16] = {0};
		if (recv(sv[1], buf, 8, MSG_WAITALL) != 8 || strcmp(buf, "to child") != 0)
			_exit(1);
		if (write(sv[1], "answer", 6) != 6 || shutdown(sv[1], SHUT_WR) != 0)
			_exit(2);
		_exit(0);
	}
	close(sv[1]);
	char buf[32] = {0};
	zdtm_syscall(read(r[0], buf, 1) == 1, "read");
	zdtm_checkpoint_here();
	memset(buf, 0, sizeof buf);
	zdtm_wake(kid);
	zdtm_reap_ok(kid, "the child");
	ssize_t n = recv(sv[0], buf, sizeof buf - 1, MSG_WAITALL);
	zdtm_check(n == 15 && strcmp(buf, "to parentanswer") == 0, "got %zd bytes '%s'", n, buf);
	zdtm_pass();
}
