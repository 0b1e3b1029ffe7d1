/* 64 threads asleep in futex(2) waits on one word at the checkpoint:
 * after the restore one FUTEX_WAKE of all of them wakes each, and every
 * thread still has its tid (gettid) and its own thread-local value. */
#include "zdtm.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define N 64

static atomic_int word;
static atomic_int woke;
static pid_t tids[N];
static __thread int mine;

static void *waiter(void *arg)
{
	int i = (int)(long)arg;
	mine = i * 3 + 1;
	tids[i] = (pid_t)syscall(SYS_gettid);
	while (atomic_load(&word) == 0)
		syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (mine != i * 3 + 1 || (pid_t)syscall(SYS_gettid) != tids[i])
		return (void *)1;
	atomic_fetch_add(&woke, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	pthread_t th[N];
	for (long i = 0; i < N; i++)
		zdtm_check(pthread_create(&th[i], NULL, waiter, (void *)i) == 0, "pthread_create %ld", i);
	for (int i = 0; i < N; i++) {
		while (__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST) == 0)
			sched_yield();
		zdtm_wait_blocked(tids[i], SYS_futex);
	}
	zdtm_checkpoint_here();
	atomic_store(&word, 1);
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, N, NULL, NULL, 0);
	for (int i = 0; i < N; i++) {
		void *ret;
		zdtm_check(pthread_join(th[i], &ret) == 0 && ret == NULL, "thread %d", i);
	}
	zdtm_check(atomic_load(&woke) == N, "%d of %d woke", atomic_load(&woke), N);
	zdtm_pass();
}
