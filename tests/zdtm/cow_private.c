/* Private anonymous memory a parent and child share copy-on-write after
 * fork and then changed differently: after the restore each sees its
 * own version, and a write by one still does not reach the other. */
#include "zdtm.h"
#include <sys/mman.h>

#define N (256 * 4096)

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	unsigned char *m = mmap(NULL, N, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	memset(m, 'p', N);
	int p[2];
	zdtm_syscall(pipe(p) == 0, "pipe");
	pid_t kid = fork();
	if (kid == 0) {
		for (int i = 0; i < N; i += 8192)
			m[i] = 'c';
		if (write(p[1], "r", 1) != 1)
			_exit(3);
		zdtm_wait();
		for (int i = 0; i < N; i += 4096)
			if (m[i] != ((i % 8192) == 0 ? 'c' : 'p'))
				_exit(1);
		m[4096] = 'C';
		_exit(0);
	}
	char x;
	zdtm_syscall(read(p[0], &x, 1) == 1, "read");
	m[4096] = 'P';
	zdtm_checkpoint_here();
	zdtm_wake(kid);
	zdtm_reap_ok(kid, "the child (its view of the memory)");
	for (int i = 0; i < N; i += 4096)
		zdtm_check(m[i] == (i == 4096 ? 'P' : 'p'), "parent page %d holds '%c'", i / 4096, m[i]);
	zdtm_pass();
}
