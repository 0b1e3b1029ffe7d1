/* A periodic ITIMER_REAL (every 50 ms) whose SIGALRMs a handler counts:
 * after the restore the timer is still armed with its interval and
 * goes on firing. */
#include "zdtm.h"
#include <sys/time.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	zdtm_syscall(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
	struct itimerval it = {{0, 50000}, {0, 50000}};
	zdtm_syscall(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
	while (alarms < 2)
		pause();
	zdtm_checkpoint_here();
	struct itimerval cur;
	zdtm_syscall(getitimer(ITIMER_REAL, &cur) == 0, "getitimer");
	zdtm_check(cur.it_interval.tv_usec == 50000 && cur.it_interval.tv_sec == 0, "interval %ld.%06ld",
		   (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_usec);
	int start = alarms;
	sigset_t none;
	sigemptyset(&none);
	while (alarms < start + 2)
		sigsuspend(&none);
	zdtm_pass();
}
