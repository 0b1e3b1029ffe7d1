/* MAP_SHARED|MAP_ANONYMOUS memory (64 KiB) shared by a parent and two
 * children: after the restore a write by one is seen by the others. */
#include "zdtm.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	volatile int *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	zdtm_syscall(m != MAP_FAILED, "mmap");
	m[0] = 5;
	m[16383] = 99;
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			m[1 + i] = 1;
			zdtm_wait();
			/* Child i bumps slot 10+i, then waits for the parent's
			 * answer in slot 20+i. */
			__atomic_store_n(&m[10 + i], m[0] + m[16383], __ATOMIC_SEQ_CST);
			while (__atomic_load_n(&m[20 + i], __ATOMIC_SEQ_CST) == 0)
				sched_yield();
			_exit(m[20 + i] == 42 ? 0 : 1);
		}
	}
	while (!(m[1] && m[2]))
		sched_yield();
	zdtm_checkpoint_here();
	for (int i = 0; i < 2; i++) {
		zdtm_wake(kids[i]);
		while (__atomic_load_n(&m[10 + i], __ATOMIC_SEQ_CST) == 0)
			sched_yield();
		zdtm_check(m[10 + i] == 104, "child %d wrote %d", i, m[10 + i]);
		__atomic_store_n(&m[20 + i], 42, __ATOMIC_SEQ_CST);
		zdtm_reap_ok(kids[i], "a child");
	}
	zdtm_pass();
}
