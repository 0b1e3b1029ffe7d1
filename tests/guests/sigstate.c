/* Prints the signal state a program starts with: ignored signals and the
 * blocked mask are inherited across execve(2), so a supervisor that ignores
 * or blocks a signal itself (Rust ignores SIGPIPE) must reset it before
 * starting the tracee. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	sigset_t blocked, pending;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	sigpending(&pending);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		struct sigaction sa;
		if (sigaction(sig, NULL, &sa) != 0)
			continue;
		const char *name = sigabbrev_np(sig);
		if (sa.sa_handler == SIG_IGN)
			printf("ignored: %s\n", name ? name : "RT");
		if (sigismember(&blocked, sig))
			printf("blocked: %d\n", sig);
		if (sigismember(&pending, sig))
			printf("pending: %d\n", sig);
	}
	printf("done\n");
	return 0;
}
