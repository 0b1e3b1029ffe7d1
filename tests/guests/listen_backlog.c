/* A listener with a connection waiting in its accept queue, on fd 10.
 *
 * argv[1]: "tcp" (127.0.0.1) or "unix" (a path socket next to argv[2]).
 * argv[2]: a pid file, written (write + rename) once the client has
 * connected (the connection is queued: nothing accepts it).
 * argv[3]: a result file: on SIGUSR1 the program accepts, checks that
 * the byte the client sent comes through, writes "intact" (or what went
 * wrong) and exits. */
#include "held.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	held_init();
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof ss);
	int tcp = strcmp(argv[1], "tcp") == 0;
	int l = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM, 0);
	if (tcp) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *in;
	} else {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof un->sun_path, "%s.sock", argv[2]);
		len = sizeof *un;
	}
	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 8) != 0 ||
	    getsockname(l, (struct sockaddr *)&ss, &len) != 0 || dup2(l, 10) != 10)
		return 4;
	close(l);
	int c = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0 || write(c, "y", 1) != 1)
		return 5;
	held_ready(argv[2]);
	held_wait();
	int a = accept(10, NULL, NULL);
	char b = 0;
	if (a < 0 || read(a, &b, 1) != 1 || b != 'y') {
		held_put(argv[3], "the waiting connection is gone");
		return 1;
	}
	held_put(argv[3], "intact");
	return 0;
}
