/* The checkpoint happens while a SIGUSR2 handler (SA_SIGINFO, with
 * SIGINT added to its sa_mask) runs: after the restore the handler
 * carries on with its siginfo and locals, the mask during it holds
 * SIGUSR2 and SIGINT, and once it returns the main program's mask and
 * locals are back as they were. */
#include "zdtm.h"

static volatile int in_handler, handler_ok, handler_done;

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int local = 1234;
	in_handler = 1;
	zdtm_checkpoint_here();
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	handler_ok = sig == SIGUSR2 && si->si_value.sival_int == 9 && local == 1234 && sigismember(&cur, SIGUSR2) &&
		     sigismember(&cur, SIGINT);
	handler_done = 1;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sigaction sa = {.sa_sigaction = handler, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	zdtm_syscall(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");
	volatile double main_local = 2.5;
	union sigval v = {.sival_int = 9};
	zdtm_syscall(sigqueue(getpid(), SIGUSR2, v) == 0, "sigqueue");
	zdtm_check(handler_done && handler_ok, "the handler saw a different world (done %d)", handler_done);
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	zdtm_check(!sigismember(&cur, SIGUSR2) && !sigismember(&cur, SIGINT) && sigismember(&cur, SIGUSR1),
		   "the mask after the handler");
	zdtm_check(main_local == 2.5, "a local of main changed");
	zdtm_pass();
}
