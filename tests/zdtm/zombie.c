/* A child that exited with status 42 and is not reaped yet (a zombie)
 * and one killed by SIGTERM: after the restore both are still there to
 * be reaped, with their statuses, and a live child too. */
#include "zdtm.h"

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	pid_t z = fork();
	if (z == 0)
		_exit(42);
	pid_t k = fork();
	if (k == 0) {
		pause();
		_exit(0);
	}
	pid_t live = fork();
	if (live == 0) {
		zdtm_wait();
		_exit(7);
	}
	zdtm_syscall(kill(k, SIGTERM) == 0, "kill");
	siginfo_t si;
	/* Ready once both are zombies (WNOWAIT leaves them so). */
	zdtm_syscall(waitid(P_PID, z, &si, WEXITED | WNOWAIT) == 0, "waitid");
	zdtm_syscall(waitid(P_PID, k, &si, WEXITED | WNOWAIT) == 0, "waitid");
	zdtm_checkpoint_here();
	int st;
	zdtm_syscall(waitpid(z, &st, WNOHANG) == z, "the exited child is gone");
	zdtm_check(WIFEXITED(st) && WEXITSTATUS(st) == 42, "exited child status %#x", st);
	zdtm_syscall(waitpid(k, &st, WNOHANG) == k, "the killed child is gone");
	zdtm_check(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "killed child status %#x", st);
	zdtm_wake(live);
	zdtm_syscall(waitpid(live, &st, 0) == live, "waitpid live");
	zdtm_check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "live child status %#x", st);
	zdtm_pass();
}
