/* A UDP socket bound to 127.0.0.1 (ephemeral port): after the restore it
 * has the same port and receives what is sent to it. */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	zdtm_syscall(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind");
	zdtm_syscall(getsockname(s, (struct sockaddr *)&a, &len) == 0, "getsockname");
	zdtm_checkpoint_here();
	struct sockaddr_in now;
	socklen_t nlen = sizeof now;
	zdtm_syscall(getsockname(s, (struct sockaddr *)&now, &nlen) == 0, "getsockname");
	zdtm_check(now.sin_port == a.sin_port, "port %d, was %d", ntohs(now.sin_port), ntohs(a.sin_port));
	int c = socket(AF_INET, SOCK_DGRAM, 0);
	zdtm_syscall(sendto(c, "udp!", 4, 0, (struct sockaddr *)&a, sizeof a) == 4, "sendto");
	char buf[8] = {0};
	zdtm_check(recv(s, buf, sizeof buf, 0) == 4 && strcmp(buf, "udp!") == 0, "got '%s'", buf);
	zdtm_pass();
}
