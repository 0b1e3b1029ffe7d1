/* Four threads, each blocking a different signal and with its own
 * alternate signal stack, asleep in sigwaitinfo: after the restore each
 * still has its own mask and altstack, and takes the signal sent to it
 * with pthread_kill. */
#include "zdtm.h"
#include <pthread.h>
#include <sys/syscall.h>

#define N 4
static pid_t tids[N];
#define STACK 65536
static char stacks[N][STACK];

static void *worker(void *arg)
{
	int i = (int)(long)arg;
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGRTMIN + i);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	stack_t ss = {.ss_sp = stacks[i], .ss_size = STACK};
	if (sigaltstack(&ss, NULL) != 0)
		return (void *)1;
	__atomic_store_n(&tids[i], (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	siginfo_t si;
	/* sigwaitinfo(2) may fail with EINTR after a stop (signal(7)). */
	int got;
	do
		got = sigwaitinfo(&m, &si);
	while (got < 0 && errno == EINTR);
	if (got != SIGRTMIN + i)
		return (void *)2;
	sigset_t cur;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	for (int j = 0; j < N; j++)
		if (sigismember(&cur, SIGRTMIN + j) != (j == i))
			return (void *)3;
	stack_t now;
	if (sigaltstack(NULL, &now) != 0 || now.ss_sp != stacks[i] || now.ss_size != STACK)
		return (void *)4;
	return NULL;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	pthread_t th[N];
	for (long i = 0; i < N; i++)
		zdtm_check(pthread_create(&th[i], NULL, worker, (void *)i) == 0, "pthread_create");
	for (int i = 0; i < N; i++) {
		while (!__atomic_load_n(&tids[i], __ATOMIC_SEQ_CST))
			sched_yield();
		zdtm_wait_blocked(tids[i], SYS_rt_sigtimedwait);
	}
	zdtm_checkpoint_here();
	for (int i = 0; i < N; i++) {
		zdtm_check(pthread_kill(th[i], SIGRTMIN + i) == 0, "pthread_kill");
		void *ret;
		pthread_join(th[i], &ret);
		zdtm_check(ret == NULL, "thread %d failed check %ld", i, (long)ret);
	}
	zdtm_pass();
}
