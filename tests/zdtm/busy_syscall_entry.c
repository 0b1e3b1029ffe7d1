/* Frozen while busy in trapped syscalls: the thread spends its time in
 * stat(2), which the seccomp filter traps, so the checkpoint usually finds
 * it in a seccomp stop at syscall entry rather than in an interrupt stop.
 * Its process's signal handlers and interval timer are read by syscalls
 * run in a stopped thread; they must come back all the same: the SIGALRM
 * handler and a SA_SIGINFO SIGUSR2 handler with their flags, and the
 * 50 ms ITIMER_REAL with its interval, still firing. */
#include "zdtm.h"
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void on_usr2(int sig, siginfo_t *info, void *ctx)
{
	(void)sig;
	(void)info;
	(void)ctx;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	zdtm_syscall(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");
	struct sigaction si = {.sa_sigaction = on_usr2, .sa_flags = SA_SIGINFO | SA_ONSTACK};
	zdtm_syscall(sigaction(SIGUSR2, &si, NULL) == 0, "sigaction SIGUSR2");
	struct itimerval it = {{0, 50000}, {0, 50000}};
	zdtm_syscall(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
	zdtm_ready();
	/* Busy in trapped calls for two seconds, when the harness
	 * checkpoints it (at once); the restored copy spins out what is left
	 * of them (the monotonic clock went on), then sleeps in zdtm_wait()
	 * as the harness expects. */
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct stat st;
	do {
		stat("/", &st);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < 2);
	zdtm_wait();
	struct sigaction cur;
	zdtm_syscall(sigaction(SIGALRM, NULL, &cur) == 0, "sigaction SIGALRM?");
	zdtm_check(cur.sa_handler == on_alarm && (cur.sa_flags & SA_RESTART), "SIGALRM handler %p flags %#x",
		   (void *)cur.sa_handler, cur.sa_flags);
	zdtm_syscall(sigaction(SIGUSR2, NULL, &cur) == 0, "sigaction SIGUSR2?");
	zdtm_check(cur.sa_sigaction == on_usr2 && (cur.sa_flags & (SA_SIGINFO | SA_ONSTACK)) == (SA_SIGINFO | SA_ONSTACK),
		   "SIGUSR2 handler %p flags %#x", (void *)cur.sa_sigaction, cur.sa_flags);
	struct itimerval now;
	zdtm_syscall(getitimer(ITIMER_REAL, &now) == 0, "getitimer");
	zdtm_check(now.it_interval.tv_usec == 50000 && now.it_interval.tv_sec == 0, "interval %ld.%06ld",
		   (long)now.it_interval.tv_sec, (long)now.it_interval.tv_usec);
	int start = alarms;
	while (alarms < start + 2)
		stat("/", &st);
	zdtm_pass();
}
