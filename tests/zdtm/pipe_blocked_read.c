/* A child blocked in read(2) on an empty pipe at the checkpoint, and one
 * blocked in write(2) on a full pipe: after the restore the read
 * completes with what the parent then writes, and the writer's data all
 * arrives once the parent drains its pipe (a write interrupted by the
 * freeze may return short, as for any signal; the writer goes on). */
#include "zdtm.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int in[2], full[2];
	zdtm_syscall(pipe(in) == 0 && pipe(full) == 0, "pipe");
	pid_t reader = fork();
	if (reader == 0) {
		char buf[16] = {0};
		ssize_t n = read(in[0], buf, sizeof buf - 1);
		_exit(n == 5 && strcmp(buf, "hello") == 0 ? 0 : 1);
	}
	int total = fcntl(full[1], F_GETPIPE_SZ) + 4096;
	pid_t writer = fork();
	if (writer == 0) {
		static char big[1 << 20];
		memset(big, 'w', total);
		for (int done = 0; done < total;) {
			ssize_t n = write(full[1], big + done, total - done);
			if (n <= 0)
				_exit(2);
			done += n;
		}
		_exit(0);
	}
	close(full[1]);
	zdtm_wait_blocked(reader, SYS_read);
	zdtm_wait_blocked(writer, SYS_write);
	zdtm_checkpoint_here();
	zdtm_syscall(write(in[1], "hello", 5) == 5, "write");
	zdtm_reap_ok(reader, "the reader");
	static char buf[1 << 20];
	int got = 0;
	for (ssize_t n; (n = read(full[0], buf, sizeof buf)) > 0;) {
		for (int i = 0; i < n; i++)
			zdtm_check(buf[i] == 'w', "byte %d is %#x", got + i, buf[i]);
		got += n;
	}
	zdtm_check(got == total, "read %d of %d bytes", got, total);
	zdtm_reap_ok(writer, "the writer");
	zdtm_pass();
}
