/* A SysV shared memory segment attached by a parent and a child: after
 * the restore they still share it (what one writes, the other reads). */
#include "zdtm.h"
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
	zdtm_syscall(id >= 0, "shmget");
	volatile int *m = shmat(id, NULL, 0);
	zdtm_syscall(m != (void *)-1, "shmat");
	/* Marked for removal: it lives while attached, and no segment is
	 * left behind if the test dies. */
	shmctl(id, IPC_RMID, NULL);
	m[0] = 17;
	pid_t kid = fork();
	if (kid == 0) {
		m[1] = 1;
		zdtm_wait();
		__atomic_store_n(&m[2], m[0] * 2, __ATOMIC_SEQ_CST);
		while (__atomic_load_n(&m[3], __ATOMIC_SEQ_CST) == 0)
			sched_yield();
		_exit(m[3] == 5 ? 0 : 1);
	}
	while (!m[1])
		sched_yield();
	zdtm_checkpoint_here();
	zdtm_wake(kid);
	while (__atomic_load_n(&m[2], __ATOMIC_SEQ_CST) == 0)
		sched_yield();
	zdtm_check(m[2] == 34, "the child wrote %d", m[2]);
	__atomic_store_n(&m[3], 5, __ATOMIC_SEQ_CST);
	zdtm_reap_ok(kid, "the child");
	zdtm_pass();
}
