/* An eventfd in flight: a unix stream socketpair whose fd 10 has one
 * message queued, "x", passing an eventfd that holds 5 and that the
 * program closed. A checkpoint cannot carry an eventfd in flight and
 * must refuse, leaving the queue as it was.
 *
 * argv[1]: a pid file, written (write + rename) once the state is built.
 * argv[2]: a result file: on SIGUSR1 the program reads the message and
 * writes "intact" if the eventfd came with it and still holds 5, else
 * what it found, then exits. */
#include "held.h"
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	held_init();
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || dup2(sv[1], 10) != 10)
		return 4;
	close(sv[1]);
	int ev = eventfd(5, 0);
	char data = 'x';
	struct iovec iov = {.iov_base = &data, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof u.buf};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &ev, sizeof ev);
	if (ev < 0 || sendmsg(sv[0], &msg, 0) != 1)
		return 5;
	close(ev);
	held_ready(argv[1]);
	held_wait();
	memset(&u, 0, sizeof u);
	data = 0;
	msg.msg_controllen = sizeof u.buf;
	if (recvmsg(10, &msg, MSG_DONTWAIT) != 1 || data != 'x') {
		held_put(argv[2], "the message is gone");
		return 1;
	}
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS) {
		held_put(argv[2], "no fd came with the message");
		return 1;
	}
	memcpy(&ev, CMSG_DATA(c), sizeof ev);
	uint64_t v = 0;
	if (read(ev, &v, sizeof v) != sizeof v || v != 5) {
		held_put(argv[2], "the eventfd does not hold 5");
		return 1;
	}
	held_put(argv[2], "intact");
	return 0;
}
