/* Syscalls interrupted by signal handlers. The kernel restarts some of them
 * (SA_RESTART, via -ERESTARTSYS, which a ptrace supervisor sees at the
 * syscall-exit stop) and never others (nanosleep returns EINTR). A supervisor
 * that treats the in-kernel restart codes as results breaks both. No timing
 * assumptions: every blocking call here blocks until a signal arrives. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

static int fds[2];
static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
	/* Release the blocked read after 50 interruptions. */
	if (++ticks == 50)
		write(fds[1], "x", 1);
}

static void timer(long usec)
{
	struct itimerval it = { { 0, usec }, { 0, usec } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void handler(int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = flags;
	sigaction(SIGALRM, &sa, NULL);
}

int main(void)
{
	char c;
	if (pipe(fds) != 0)
		return 1;

	handler(SA_RESTART);
	timer(1000);
	errno = 0;
	ssize_t n = read(fds[0], &c, 1);
	timer(0);
	printf("read with SA_RESTART: ret=%zd errno=%s interrupted>=50: %d\n", n,
	       n < 0 ? strerrorname_np(errno) : "none", ticks >= 50);

	ticks = -1000000; /* the handler must not release this one */
	handler(0);
	timer(1000);
	errno = 0;
	n = read(fds[0], &c, 1);
	timer(0);
	printf("read without SA_RESTART: ret=%zd errno=%s\n", n, strerrorname_np(errno));

	/* nanosleep(2): never restarted after a handler, whatever SA_RESTART. */
	handler(SA_RESTART);
	timer(1000);
	struct timespec ts = { 30, 0 }, rem = { 0, 0 };
	errno = 0;
	int r = nanosleep(&ts, &rem);
	timer(0);
	printf("nanosleep with SA_RESTART: ret=%d errno=%s remaining>20s: %d\n", r,
	       strerrorname_np(errno), rem.tv_sec > 20);

	/* pause(2) returns -1 EINTR once a handler ran. */
	timer(1000);
	errno = 0;
	r = pause();
	timer(0);
	printf("pause: ret=%d errno=%s\n", r, strerrorname_np(errno));

	/* A pending SIGALRM arriving while it is blocked, then sigsuspend. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigprocmask(SIG_BLOCK, &block, &old);
	ticks = 0;
	timer(1000);
	while (1) {
		sigset_t pend;
		sigpending(&pend);
		if (sigismember(&pend, SIGALRM))
			break;
	}
	timer(0);
	errno = 0;
	r = sigsuspend(&old);
	printf("sigsuspend: ret=%d errno=%s handler ran: %d\n", r, strerrorname_np(errno),
	       ticks == 1);
	return 0;
}
