/* Datagrams queued on UDP sockets, sent by UDP sockets of the program:
 * a receiver bound to 127.0.0.1 holds "one" from a sender bound to
 * 0.0.0.0, an empty datagram and a 60000-byte one from a sender that
 * connect(2) bound, and "three" from the first again; a connected
 * receiver holds "to you" from its peer. After the restore each comes
 * out whole, in order, from the address of the socket that sent it, and
 * nothing else is queued. */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>

static struct sockaddr_in local(int s)
{
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	zdtm_syscall(getsockname(s, (struct sockaddr *)&a, &l) == 0, "getsockname");
	return a;
}

static void expect(int s, const char *data, size_t len, struct sockaddr_in from, const char *what)
{
	static char buf[65536];
	struct sockaddr_in got;
	socklen_t l = sizeof got;
	ssize_t n = recvfrom(s, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&got, &l);
	zdtm_syscall(n >= 0, "recvfrom %s", what);
	zdtm_check((size_t)n == len && memcmp(buf, data, len) == 0, "%s: %zd bytes", what, n);
	zdtm_check(got.sin_port == from.sin_port && got.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
		   "%s came from port %d, not %d", what, ntohs(got.sin_port), ntohs(from.sin_port));
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in any = {.sin_family = AF_INET};
	int r = socket(AF_INET, SOCK_DGRAM, 0);
	zdtm_syscall(bind(r, (struct sockaddr *)&lo, sizeof lo) == 0, "bind r");
	struct sockaddr_in ra = local(r);
	int a = socket(AF_INET, SOCK_DGRAM, 0);
	zdtm_syscall(bind(a, (struct sockaddr *)&any, sizeof any) == 0, "bind a");
	int b = socket(AF_INET, SOCK_DGRAM, 0);
	zdtm_syscall(connect(b, (struct sockaddr *)&ra, sizeof ra) == 0, "connect b");
	struct sockaddr_in aa = local(a), ba = local(b);
	aa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int c = socket(AF_INET, SOCK_DGRAM, 0);
	zdtm_syscall(bind(c, (struct sockaddr *)&lo, sizeof lo) == 0 &&
			     connect(c, (struct sockaddr *)&aa, sizeof aa) == 0,
		     "connect c");
	struct sockaddr_in ca = local(c);

	static char big[60000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i % 253);
	zdtm_syscall(sendto(a, "one", 3, 0, (struct sockaddr *)&ra, sizeof ra) == 3, "send one");
	zdtm_syscall(send(b, "", 0, 0) == 0, "send empty");
	zdtm_syscall(send(b, big, sizeof big, 0) == sizeof big, "send big");
	zdtm_syscall(sendto(a, "three", 5, 0, (struct sockaddr *)&ra, sizeof ra) == 5, "send three");
	zdtm_syscall(sendto(a, "to you", 6, 0, (struct sockaddr *)&ca, sizeof ca) == 6, "send to c");
	zdtm_checkpoint_here();

	expect(r, "one", 3, aa, "one");
	expect(r, "", 0, ba, "the empty one");
	expect(r, big, sizeof big, ba, "the big one");
	expect(r, "three", 5, aa, "three");
	expect(c, "to you", 6, aa, "c's");
	char buf[8];
	zdtm_check(recv(r, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "an extra datagram on r");
	zdtm_check(recv(c, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "an extra datagram on c");
	zdtm_pass();
}
