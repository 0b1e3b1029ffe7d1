/* Connections waiting in unix listeners' accept queues, never accepted:
 * two clients of a stream listener and one of a seqpacket listener,
 * connected before the checkpoint and silent. After the restore the
 * listeners hand them out in the order they connected, and each pair
 * carries data both ways. */
#include "zdtm.h"

static int listener(int type, const char *name, struct sockaddr_un *sa)
{
	*sa = zdtm_unix_addr(name);
	int l = socket(AF_UNIX, type, 0);
	zdtm_syscall(l >= 0 && bind(l, (struct sockaddr *)sa, sizeof *sa) == 0 && listen(l, 8) == 0, "listen %s",
		     name);
	return l;
}

static int client(int type, struct sockaddr_un *sa)
{
	int c = socket(AF_UNIX, type, 0);
	zdtm_syscall(c >= 0 && connect(c, (struct sockaddr *)sa, sizeof *sa) == 0, "connect");
	return c;
}

/* The next connection of l carries tag from its client c, and back. */
static void check(int l, int c, const char *tag)
{
	zdtm_syscall(write(c, tag, strlen(tag)) == (ssize_t)strlen(tag), "write %s", tag);
	int a = accept(l, NULL, NULL);
	zdtm_syscall(a >= 0, "accept for %s", tag);
	char buf[16] = {0};
	zdtm_check(read(a, buf, sizeof buf) == (ssize_t)strlen(tag) && strcmp(buf, tag) == 0,
		   "accepted '%s', want '%s'", buf, tag);
	zdtm_syscall(write(a, "ack", 3) == 3, "write ack");
	memset(buf, 0, sizeof buf);
	zdtm_check(read(c, buf, sizeof buf) == 3 && strcmp(buf, "ack") == 0, "%s got '%s' back", tag, buf);
	close(a);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sockaddr_un ss, sp;
	int ls = listener(SOCK_STREAM, "stream.sock", &ss);
	int lp = listener(SOCK_SEQPACKET, "seqpacket.sock", &sp);
	int c1 = client(SOCK_STREAM, &ss);
	int c2 = client(SOCK_STREAM, &ss);
	int c3 = client(SOCK_SEQPACKET, &sp);
	zdtm_checkpoint_here();
	check(ls, c1, "first");
	check(ls, c2, "second");
	check(lp, c3, "packet");
	int fl = fcntl(ls, F_GETFL);
	zdtm_syscall(fcntl(ls, F_SETFL, fl | O_NONBLOCK) == 0, "fcntl");
	zdtm_check(accept(ls, NULL, NULL) < 0 && errno == EAGAIN, "an extra connection");
	zdtm_pass();
}
