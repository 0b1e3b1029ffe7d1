/* A unix datagram socket bound to a path, with datagrams queued from an
 * unbound sender: after the restore they are still queued, and new
 * datagrams sent to the path arrive. */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sockaddr_un sa = zdtm_unix_addr("dsock");
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	zdtm_syscall(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0, "bind");
	int c = socket(AF_UNIX, SOCK_DGRAM, 0);
	zdtm_syscall(sendto(c, "first", 5, 0, (struct sockaddr *)&sa, sizeof sa) == 5, "sendto");
	zdtm_syscall(sendto(c, "second", 6, 0, (struct sockaddr *)&sa, sizeof sa) == 6, "sendto");
	zdtm_checkpoint_here();
	char buf[16] = {0};
	zdtm_check(recv(s, buf, sizeof buf, MSG_DONTWAIT) == 5 && strcmp(buf, "first") == 0, "got '%s'", buf);
	memset(buf, 0, sizeof buf);
	zdtm_check(recv(s, buf, sizeof buf, MSG_DONTWAIT) == 6 && strcmp(buf, "second") == 0, "got '%s'", buf);
	zdtm_syscall(sendto(c, "third", 5, 0, (struct sockaddr *)&sa, sizeof sa) == 5, "sendto");
	memset(buf, 0, sizeof buf);
	zdtm_check(recv(s, buf, sizeof buf, 0) == 5 && strcmp(buf, "third") == 0, "got '%s'", buf);
	zdtm_pass();
}
