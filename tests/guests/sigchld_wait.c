/* SIGCHLD and wait semantics: children exiting with various codes or
 * killed by signals; the parent reaps each by pid and reports the status,
 * and peeks one with waitid(WNOWAIT) first. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

static volatile sig_atomic_t chld;

static void on_chld(int sig)
{
	chld++;
}

static void describe(int i, int status)
{
	if (WIFEXITED(status))
		printf("child %d: exited %d\n", i, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("child %d: killed by signal %d\n", i, WTERMSIG(status));
	else
		printf("child %d: status %#x\n", i, status);
}

int main(void)
{
	struct rlimit none = { 0, 0 };
	setrlimit(RLIMIT_CORE, &none);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);

	enum { N = 8 };
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			switch (i) {
			case 5:
				raise(SIGKILL);
				break;
			case 6:
				*(volatile int *)0 = 0;
				break;
			case 7:
				abort();
			}
			_exit(i * 10);
		}
	}
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, pids[0], &si, WEXITED | WNOWAIT) == 0)
		printf("waitid WNOWAIT: pid matches=%d code=%d status=%d\n",
		       si.si_pid == pids[0], si.si_code, si.si_status);
	for (int i = 0; i < N; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) != pids[i]) {
			perror("waitpid");
			return 1;
		}
		describe(i, status);
	}
	int status;
	printf("further wait: %d\n", waitpid(-1, &status, WNOHANG) == -1 ? -1 : 0);
	printf("got SIGCHLD: %s\n", chld > 0 ? "yes" : "no");
	return 0;
}
