/* Files in flight: messages queued on unix socketpairs that pass fds
 * with SCM_RIGHTS, on a stream, a datagram and a seqpacket pair, each
 * queue with plain bytes or messages around the ones that pass files:
 *   - stream: "hdr" (no files), then "body" passing the read end of a
 *     pipe the program keeps writing into, then "tail";
 *   - dgram: "plain", then "file" passing a file the sender opened,
 *     moved to offset 3 and closed;
 *   - dgram, then: "memfd" passing a memfd the sender keeps open, at
 *     offset 2;
 *   - seqpacket: "sock" passing one end of another socketpair whose
 *     other end the program keeps, then "lsn" passing a TCP listener the
 *     sender keeps.
 * After the restore each file must arrive with its own bytes (a read of
 * "hdr" alone brings no file), be the same object (the pipe and the
 * socket carry data written at the other end) and keep its offset. */
#include "zdtm.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>

static void send_fd(int sock, const char *data, int fd)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof u);
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	zdtm_syscall(sendmsg(sock, &msg, 0) == (ssize_t)strlen(data), "sendmsg %s", data);
}

/* Receives up to len bytes (exactly want) and returns the fd passed with
 * them, or -1 if none. */
static int recv_fd(int sock, size_t len, const char *want)
{
	char buf[64] = {0};
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof u.buf};
	ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT);
	zdtm_syscall(n >= 0, "recvmsg for '%s'", want);
	zdtm_check((size_t)n == strlen(want) && memcmp(buf, want, n) == 0, "got '%s' for '%s'", buf, want);
	zdtm_check(!(msg.msg_flags & MSG_CTRUNC), "control data cut short with '%s'", want);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c)
		return -1;
	zdtm_check(c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)),
		   "one fd with '%s'", want);
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int st[2], dg[2], sp[2], other[2], pipefd[2];
	zdtm_syscall(socketpair(AF_UNIX, SOCK_STREAM, 0, st) == 0, "socketpair stream");
	zdtm_syscall(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0, "socketpair dgram");
	zdtm_syscall(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0, "socketpair seqpacket");
	zdtm_syscall(socketpair(AF_UNIX, SOCK_STREAM, 0, other) == 0, "socketpair other");
	zdtm_syscall(pipe(pipefd) == 0, "pipe");

	send_fd(st[0], "hdr", -1);
	send_fd(st[0], "body", pipefd[0]);
	send_fd(st[0], "tail", -1);
	close(pipefd[0]);

	const char *path = zdtm_path("data");
	int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	zdtm_syscall(w >= 0 && write(w, "0123456789", 10) == 10 && close(w) == 0, "write %s", path);
	int f = open(path, O_RDONLY);
	zdtm_syscall(f >= 0 && lseek(f, 3, SEEK_SET) == 3, "open %s", path);
	send_fd(dg[0], "plain", -1);
	send_fd(dg[0], "file", f);
	close(f);

	int mfd = memfd_create("inflight", 0);
	zdtm_syscall(mfd >= 0 && write(mfd, "memfd data", 10) == 10 && lseek(mfd, 2, SEEK_SET) == 2, "memfd");
	send_fd(dg[0], "memfd", mfd);

	send_fd(sp[0], "sock", other[1]);
	int lsn = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t llen = sizeof la;
	zdtm_syscall(lsn >= 0 && bind(lsn, (struct sockaddr *)&la, sizeof la) == 0 && listen(lsn, 4) == 0 &&
			     getsockname(lsn, (struct sockaddr *)&la, &llen) == 0,
		     "listen");
	send_fd(sp[0], "lsn", lsn);

	zdtm_checkpoint_here();

	zdtm_check(recv_fd(st[1], 3, "hdr") < 0, "a file came with 'hdr'");
	int rd = recv_fd(st[1], 4, "body");
	zdtm_check(rd >= 0, "no file with 'body'");
	zdtm_check(recv_fd(st[1], 16, "tail") < 0, "a file came with 'tail'");
	char buf[16] = {0};
	zdtm_syscall(write(pipefd[1], "pipe", 4) == 4, "write the pipe");
	zdtm_check(read(rd, buf, sizeof buf) == 4 && memcmp(buf, "pipe", 4) == 0,
		   "the pipe end passed reads '%s'", buf);

	zdtm_check(recv_fd(dg[1], 16, "plain") < 0, "a file came with 'plain'");
	int fr = recv_fd(dg[1], 16, "file");
	zdtm_check(fr >= 0, "no file with 'file'");
	memset(buf, 0, sizeof buf);
	zdtm_check(read(fr, buf, sizeof buf) == 7 && memcmp(buf, "3456789", 7) == 0,
		   "the file passed reads '%s' from its offset", buf);

	int mr = recv_fd(dg[1], 16, "memfd");
	zdtm_check(mr >= 0, "no file with 'memfd'");
	memset(buf, 0, sizeof buf);
	zdtm_check(read(mr, buf, sizeof buf) == 8 && memcmp(buf, "mfd data", 8) == 0,
		   "the memfd passed reads '%s' from its offset", buf);

	int so = recv_fd(sp[1], 16, "sock");
	zdtm_check(so >= 0, "no file with 'sock'");
	zdtm_syscall(write(other[0], "sock", 4) == 4, "write the other pair");
	memset(buf, 0, sizeof buf);
	zdtm_check(read(so, buf, sizeof buf) == 4 && memcmp(buf, "sock", 4) == 0,
		   "the socket passed reads '%s'", buf);

	int ln = recv_fd(sp[1], 16, "lsn");
	zdtm_check(ln >= 0, "no file with 'lsn'");
	struct sockaddr_in now;
	socklen_t nlen = sizeof now;
	zdtm_syscall(getsockname(ln, (struct sockaddr *)&now, &nlen) == 0, "getsockname");
	zdtm_check(now.sin_port == la.sin_port, "the listener passed has port %d, was %d", ntohs(now.sin_port),
		   ntohs(la.sin_port));
	int c = socket(AF_INET, SOCK_STREAM, 0);
	zdtm_syscall(connect(c, (struct sockaddr *)&la, sizeof la) == 0, "connect to the listener passed");
	int a = accept(ln, NULL, NULL);
	zdtm_syscall(a >= 0, "accept on the listener passed");

	zdtm_check(recv(st[1], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "extra stream bytes");
	zdtm_check(recv(dg[1], buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN, "an extra datagram");
	zdtm_pass();
}
