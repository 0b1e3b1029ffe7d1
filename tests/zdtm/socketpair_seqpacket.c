/* A unix seqpacket socketpair between a parent and a child: after the
 * restore they exchange records whose boundaries hold. */
#include "zdtm.h"
#include <sys/socket.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int sv[2];
	zdtm_syscall(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
	pid_t kid = fork();
	if (kid == 0) {
		close(sv[0]);
		char buf[64] = {0};
		ssize_t n = recv(sv[1], buf, sizeof buf, 0);
		if (n != 4 || memcmp(buf, "ping", 4) != 0)
			_exit(1);
		_exit(send(sv[1], "pong!", 5, 0) == 5 ? 0 : 2);
	}
	close(sv[1]);
	zdtm_checkpoint_here();
	zdtm_syscall(send(sv[0], "ping", 4, 0) == 4, "send");
	char buf[64] = {0};
	zdtm_check(recv(sv[0], buf, sizeof buf, 0) == 5 && strcmp(buf, "pong!") == 0, "reply '%s'", buf);
	zdtm_reap_ok(kid, "the child");
	zdtm_pass();
}
