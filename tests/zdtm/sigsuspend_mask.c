/* Checkpointed while asleep in sigsuspend(2) with a temporary mask that
 * lets SIGUSR1 through: after the restore and the wake-up, sigsuspend
 * must put back the program's own mask, where SIGUSR1 and SIGUSR2 are
 * blocked (the kernel keeps it aside while the call sleeps,
 * saved_sigmask; /proc's SigBlk shows the temporary one). */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, NULL);
	zdtm_checkpoint_here();
	sigset_t cur;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	zdtm_check(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2),
		   "after sigsuspend the mask is not the program's: SIGUSR1 %s, SIGUSR2 %s",
		   sigismember(&cur, SIGUSR1) ? "blocked" : "unblocked", sigismember(&cur, SIGUSR2) ? "blocked" : "unblocked");
	zdtm_pass();
}
