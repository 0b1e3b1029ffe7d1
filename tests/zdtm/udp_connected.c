/* Connected UDP sockets, IPv4 and (if the host has ::1) IPv6: a server
 * socket bound to loopback and a client connected to it (its port was
 * chosen by connect). After the restore the client has the same local
 * address and peer, send(2) without an address reaches the server, and
 * the client still takes datagrams from its peer only. */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct pair {
	int srv, cli, other;
	struct sockaddr_storage srv_addr, cli_addr;
	socklen_t len;
};

static int make(struct pair *p, int family)
{
	memset(p, 0, sizeof *p);
	struct sockaddr_storage any;
	memset(&any, 0, sizeof any);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&any;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		p->len = sizeof *a;
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&any;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		p->len = sizeof *a;
	}
	p->srv = socket(family, SOCK_DGRAM, 0);
	zdtm_syscall(p->srv >= 0, "socket");
	if (bind(p->srv, (struct sockaddr *)&any, p->len) != 0) {
		zdtm_check(family == AF_INET6, "bind the IPv4 server");
		close(p->srv);
		return 0; /* no ::1 here */
	}
	socklen_t l = p->len;
	zdtm_syscall(getsockname(p->srv, (struct sockaddr *)&p->srv_addr, &l) == 0, "getsockname");
	p->cli = socket(family, SOCK_DGRAM, 0);
	zdtm_syscall(connect(p->cli, (struct sockaddr *)&p->srv_addr, p->len) == 0, "connect");
	l = p->len;
	zdtm_syscall(getsockname(p->cli, (struct sockaddr *)&p->cli_addr, &l) == 0, "getsockname");
	/* A third socket, to send to the client from a port not its peer
	 * (bound: a socket never bound is in no /proc/net table). */
	p->other = socket(family, SOCK_DGRAM, 0);
	zdtm_syscall(p->other >= 0 && bind(p->other, (struct sockaddr *)&any, p->len) == 0, "bind other");
	return 1;
}

static void check(struct pair *p, const char *name)
{
	struct sockaddr_storage now;
	socklen_t l = p->len;
	memset(&now, 0, sizeof now);
	zdtm_syscall(getsockname(p->cli, (struct sockaddr *)&now, &l) == 0, "%s getsockname", name);
	zdtm_check(memcmp(&now, &p->cli_addr, p->len) == 0, "%s: the client's address changed", name);
	l = p->len;
	memset(&now, 0, sizeof now);
	zdtm_syscall(getpeername(p->cli, (struct sockaddr *)&now, &l) == 0, "%s getpeername", name);
	zdtm_check(memcmp(&now, &p->srv_addr, p->len) == 0, "%s: the client's peer changed", name);
	char buf[16] = {0};
	zdtm_syscall(send(p->cli, "ping", 4, 0) == 4, "%s send", name);
	zdtm_check(recv(p->srv, buf, sizeof buf, 0) == 4 && strcmp(buf, "ping") == 0, "%s: server got '%s'",
		   name, buf);
	/* Not from its peer: dropped (udp(7)); then the peer's arrives. */
	zdtm_syscall(sendto(p->other, "nope", 4, 0, (struct sockaddr *)&p->cli_addr, p->len) == 4, "%s sendto",
		     name);
	zdtm_syscall(sendto(p->srv, "pong", 4, 0, (struct sockaddr *)&p->cli_addr, p->len) == 4, "%s sendto",
		     name);
	memset(buf, 0, sizeof buf);
	zdtm_check(recv(p->cli, buf, sizeof buf, 0) == 4 && strcmp(buf, "pong") == 0, "%s: client got '%s'",
		   name, buf);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct pair v4, v6;
	make(&v4, AF_INET);
	int have6 = make(&v6, AF_INET6);
	zdtm_checkpoint_here();
	check(&v4, "IPv4");
	if (have6)
		check(&v6, "IPv6");
	zdtm_pass();
}
