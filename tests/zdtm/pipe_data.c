/* A pipe whose both ends one process holds, with 100 KiB buffered in a
 * pipe grown to 256 KiB (F_SETPIPE_SZ): every byte comes back, in order,
 * and the write end keeps O_NONBLOCK. */
#include "zdtm.h"

#define N (100 * 1024)

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int p[2];
	zdtm_syscall(pipe(p) == 0, "pipe");
	zdtm_syscall(fcntl(p[1], F_SETPIPE_SZ, 256 * 1024) >= 256 * 1024, "F_SETPIPE_SZ");
	zdtm_syscall(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0, "F_SETFL");
	static unsigned char buf[N];
	for (int i = 0; i < N; i++)
		buf[i] = (unsigned char)(i * 7 + i / 251);
	zdtm_syscall(write(p[1], buf, N) == N, "write");
	zdtm_checkpoint_here();
	zdtm_check(fcntl(p[1], F_GETFL) & O_NONBLOCK, "the write end lost O_NONBLOCK");
	zdtm_check(!(fcntl(p[0], F_GETFL) & O_NONBLOCK), "the read end gained O_NONBLOCK");
	static unsigned char got[N];
	size_t have = 0;
	while (have < N) {
		ssize_t n = read(p[0], got + have, N - have);
		zdtm_syscall(n > 0, "read after %zu bytes", have);
		have += n;
	}
	zdtm_check(memcmp(buf, got, N) == 0, "the pipe's data differs");
	close(p[1]);
	char x;
	zdtm_check(read(p[0], &x, 1) == 0, "more data than was written");
	zdtm_pass();
}
