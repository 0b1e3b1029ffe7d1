/* A unix stream socket (fd 10) connected to a listener outside the
 * group (argv[1], a path). A restore could not connect it again, so a
 * checkpoint must refuse.
 *
 * argv[2]: a pid file, written (write + rename) once connected.
 * argv[3]: a result file: on SIGUSR1 the program writes "x" through the
 * socket, writes "intact" if that worked, and exits. */
#include "held.h"
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
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	snprintf(un.sun_path, sizeof un.sun_path, "%s", argv[1]);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&un, sizeof un) != 0 || dup2(s, 10) != 10)
		return 4;
	close(s);
	held_ready(argv[2]);
	held_wait();
	held_put(argv[3], write(10, "x", 1) == 1 ? "intact" : "the socket is gone");
	return 0;
}
