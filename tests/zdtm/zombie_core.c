/* Zombies and their parent's SIGCHLD: a child that dumped core (SIGABRT,
 * its core written into DIR with no memory in it) and one that exited
 * with 3, neither reaped, while the parent counts SIGCHLDs in a handler.
 * After the restore the parent gets no SIGCHLD it had not had already,
 * and reaps both with the same statuses, WCOREDUMP included. */
#include "zdtm.h"
#include <sys/resource.h>

static volatile sig_atomic_t chlds;

static void on_chld(int sig)
{
	(void)sig;
	chlds++;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sigaction sa = {.sa_handler = on_chld, .sa_flags = SA_RESTART};
	zdtm_syscall(sigaction(SIGCHLD, &sa, NULL) == 0, "sigaction");
	pid_t dumper = fork();
	if (dumper == 0) {
		struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
		setrlimit(RLIMIT_CORE, &unlimited);
		int f = open("/proc/self/coredump_filter", O_WRONLY);
		if (f >= 0) {
			(void)!write(f, "0", 1);
			close(f);
		}
		if (chdir(zdtm_dir) != 0)
			_exit(9);
		abort();
	}
	pid_t exited = fork();
	if (exited == 0)
		_exit(3);
	siginfo_t si;
	zdtm_syscall(waitid(P_PID, dumper, &si, WEXITED | WNOWAIT) == 0, "waitid");
	int dumped = si.si_code == CLD_DUMPED;
	zdtm_check(dumped || si.si_code == CLD_KILLED, "the dumper ended with si_code %d", si.si_code);
	zdtm_syscall(waitid(P_PID, exited, &si, WEXITED | WNOWAIT) == 0, "waitid");
	/* Both SIGCHLDs have been handled by now (the handler runs before
	 * waitid returns to us, or they merged into one). */
	sigset_t pending;
	sigpending(&pending);
	zdtm_check(!sigismember(&pending, SIGCHLD), "SIGCHLD still pending");
	int before = chlds;
	zdtm_check(before > 0, "no SIGCHLD was handled");
	zdtm_checkpoint_here();
	zdtm_check(chlds == before, "SIGCHLDs: %d after the restore, %d before", (int)chlds, before);
	int st;
	zdtm_syscall(waitpid(dumper, &st, WNOHANG) == dumper, "the dumper is gone");
	zdtm_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "dumper status %#x", st);
	zdtm_check(!!WCOREDUMP(st) == dumped, "dumper status %#x: core dump bit %d, was %d", st, !!WCOREDUMP(st),
		   dumped);
	zdtm_syscall(waitpid(exited, &st, WNOHANG) == exited, "the exited child is gone");
	zdtm_check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "exited child status %#x", st);
	zdtm_check(chlds == before, "SIGCHLDs: %d after reaping, %d before", (int)chlds, before);
	zdtm_pass();
}
