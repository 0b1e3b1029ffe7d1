/* A connected unix stream socket made by connect(2) to a listening
 * socket of the same process and accept(2), with data queued on the
 * accepted side: after the restore the data is there and the pair
 * still talks. */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sockaddr_un sa = zdtm_unix_addr("sock");
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	zdtm_syscall(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 1) == 0, "listen");
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	zdtm_syscall(connect(c, (struct sockaddr *)&sa, sizeof sa) == 0, "connect");
	int a = accept(l, NULL, NULL);
	zdtm_syscall(a >= 0, "accept");
	close(l);
	zdtm_syscall(write(c, "queued", 6) == 6, "write");
	zdtm_checkpoint_here();
	char buf[16] = {0};
	zdtm_check(recv(a, buf, sizeof buf, MSG_DONTWAIT) == 6 && strcmp(buf, "queued") == 0, "got '%s'", buf);
	zdtm_syscall(write(a, "reply", 5) == 5, "write");
	memset(buf, 0, sizeof buf);
	zdtm_check(read(c, buf, sizeof buf) == 5 && strcmp(buf, "reply") == 0, "got '%s'", buf);
	zdtm_pass();
}
