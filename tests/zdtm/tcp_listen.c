/* A listening TCP socket on 127.0.0.1 (an ephemeral port) and one on
 * ::1: after the restore each is bound to the same port, listening, and
 * accepts a client. */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void check_accepts(int l, struct sockaddr *sa, socklen_t len, int family)
{
	int c = socket(family, SOCK_STREAM, 0);
	zdtm_syscall(connect(c, sa, len) == 0, "connect to the restored listener");
	int a = accept(l, NULL, NULL);
	zdtm_syscall(a >= 0, "accept");
	zdtm_syscall(write(c, "x", 1) == 1, "write");
	char x = 0;
	zdtm_check(read(a, &x, 1) == 1 && x == 'x', "read");
	close(a);
	close(c);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int l4 = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len4 = sizeof a4;
	zdtm_syscall(bind(l4, (struct sockaddr *)&a4, sizeof a4) == 0 && listen(l4, 4) == 0, "listen v4");
	zdtm_syscall(getsockname(l4, (struct sockaddr *)&a4, &len4) == 0, "getsockname");
	int l6 = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
	socklen_t len6 = sizeof a6;
	int have6 = l6 >= 0 && bind(l6, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(l6, 4) == 0;
	if (have6)
		zdtm_syscall(getsockname(l6, (struct sockaddr *)&a6, &len6) == 0, "getsockname");
	zdtm_checkpoint_here();
	struct sockaddr_in now4;
	socklen_t n4 = sizeof now4;
	zdtm_syscall(getsockname(l4, (struct sockaddr *)&now4, &n4) == 0, "getsockname");
	zdtm_check(now4.sin_port == a4.sin_port, "port %d, was %d", ntohs(now4.sin_port), ntohs(a4.sin_port));
	int acc = 0;
	socklen_t alen = sizeof acc;
	zdtm_syscall(getsockopt(l4, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen) == 0, "SO_ACCEPTCONN");
	zdtm_check(acc == 1, "not listening");
	check_accepts(l4, (struct sockaddr *)&a4, sizeof a4, AF_INET);
	if (have6)
		check_accepts(l6, (struct sockaddr *)&a6, sizeof a6, AF_INET6);
	zdtm_pass();
}
