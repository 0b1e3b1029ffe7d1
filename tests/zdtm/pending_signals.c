/* Blocked signals pending at the checkpoint: SIGUSR2 sent to the
 * process, SIGRTMIN+2 queued three times with values (real-time signals
 * queue), and SIGRTMIN+3 queued to the main thread: after the restore
 * sigtimedwait takes them all, each with its value and si_code, in
 * the order the kernel dequeues them. */
#include "zdtm.h"
#include <sys/syscall.h>
#include <time.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigaddset(&m, SIGRTMIN + 2);
	sigaddset(&m, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &m, NULL);
	zdtm_syscall(kill(getpid(), SIGUSR2) == 0, "kill");
	for (int i = 0; i < 3; i++) {
		union sigval v = {.sival_int = 100 + i};
		zdtm_syscall(sigqueue(getpid(), SIGRTMIN + 2, v) == 0, "sigqueue");
	}
	siginfo_t info = {.si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid()};
	info.si_value.sival_int = 77;
	info.si_signo = SIGRTMIN + 3;
	zdtm_syscall(syscall(SYS_rt_tgsigqueueinfo, getpid(), getpid(), SIGRTMIN + 3, &info) == 0, "tgsigqueueinfo");
	zdtm_checkpoint_here();
	sigset_t p;
	sigpending(&p);
	zdtm_check(sigismember(&p, SIGUSR2) && sigismember(&p, SIGRTMIN + 2) && sigismember(&p, SIGRTMIN + 3),
		   "not all pending");
	struct timespec zero = {0, 0};
	siginfo_t si;
	/* The thread's own queue is taken before the process's
	 * (kernel/signal.c, dequeue_signal), each lowest number first. */
	int sig = sigtimedwait(&m, &si, &zero);
	zdtm_check(sig == SIGRTMIN + 3 && si.si_value.sival_int == 77 && si.si_code == SI_QUEUE,
		   "first: signal %d value %d code %d, want the thread's SIGRTMIN+3", sig, si.si_value.sival_int,
		   si.si_code);
	sig = sigtimedwait(&m, &si, &zero);
	zdtm_check(sig == SIGUSR2 && si.si_code == SI_USER && si.si_pid == getpid(), "second: signal %d code %d", sig,
		   si.si_code);
	for (int i = 0; i < 3; i++) {
		sig = sigtimedwait(&m, &si, &zero);
		zdtm_check(sig == SIGRTMIN + 2 && si.si_value.sival_int == 100 + i,
			   "SIGRTMIN+2 number %d: signal %d value %d", i, sig, si.si_value.sival_int);
	}
	zdtm_check(sigtimedwait(&m, &si, &zero) < 0 && errno == EAGAIN, "an extra signal");
	zdtm_pass();
}
