/* A unix datagram socketpair with four datagrams queued (message
 * boundaries matter), one of them 10000 bytes: after the restore they
 * are read back one by one, each whole, in order. */
#include "zdtm.h"
#include <sys/socket.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int sv[2];
	zdtm_syscall(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair");
	const char *msgs[] = {"one", "second", "the third datagram"};
	for (int i = 0; i < 3; i++)
		zdtm_syscall(send(sv[0], msgs[i], strlen(msgs[i]), 0) == (ssize_t)strlen(msgs[i]), "send");
	static char big[10000], got[10000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i % 251);
	zdtm_syscall(send(sv[0], big, sizeof big, 0) == sizeof big, "send big");
	zdtm_syscall(send(sv[1], "back", 4, 0) == 4, "send");
	zdtm_checkpoint_here();
	char buf[64];
	for (int i = 0; i < 3; i++) {
		memset(buf, 0, sizeof buf);
		ssize_t n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
		zdtm_check(n == (ssize_t)strlen(msgs[i]) && strcmp(buf, msgs[i]) == 0,
			   "datagram %d: %zd bytes '%s'", i, n, n > 0 ? buf : "");
	}
	zdtm_check(recv(sv[1], got, sizeof got, MSG_DONTWAIT) == sizeof got && memcmp(got, big, sizeof big) == 0,
		   "the big datagram");
	memset(buf, 0, sizeof buf);
	zdtm_check(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT) == 4 && strcmp(buf, "back") == 0,
		   "the other direction's datagram");
	zdtm_check(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "an extra datagram");
	zdtm_pass();
}
