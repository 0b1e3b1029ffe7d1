/* A unix stream socket bound to a path and listening: after the restore
 * a client connects to the path and is accepted, and getsockname still
 * names the path. */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sockaddr_un sa = zdtm_unix_addr("sock");
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	zdtm_syscall(l >= 0, "socket");
	zdtm_syscall(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0, "bind");
	zdtm_syscall(listen(l, 8) == 0, "listen");
	zdtm_checkpoint_here();
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	zdtm_syscall(connect(c, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
	int a = accept(l, NULL, NULL);
	zdtm_syscall(a >= 0, "accept");
	zdtm_syscall(write(c, "hi", 2) == 2, "write");
	char buf[4] = {0};
	zdtm_check(read(a, buf, 2) == 2 && strcmp(buf, "hi") == 0, "read '%s'", buf);
	struct sockaddr_un got = {0};
	socklen_t len = sizeof got;
	zdtm_syscall(getsockname(l, (struct sockaddr *)&got, &len) == 0, "getsockname");
	zdtm_check(strcmp(got.sun_path, sa.sun_path) == 0, "bound to '%s'", got.sun_path);
	zdtm_pass();
}
