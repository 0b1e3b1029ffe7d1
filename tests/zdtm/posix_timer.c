/* A POSIX timer (timer_create, CLOCK_MONOTONIC, SIGEV_SIGNAL with
 * SIGRTMIN and a value) firing every 30 ms: after the restore the same
 * timer id is armed and its signals, with the value, keep coming. */
#include "zdtm.h"
#include <time.h>

static volatile sig_atomic_t fired, bad_value;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_value.sival_int != 31337 || si->si_code != SI_TIMER)
		bad_value = 1;
	fired++;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	struct sigaction sa = {.sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
	zdtm_syscall(sigaction(SIGRTMIN, &sa, NULL) == 0, "sigaction");
	struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN};
	sev.sigev_value.sival_int = 31337;
	timer_t id;
	zdtm_syscall(timer_create(CLOCK_MONOTONIC, &sev, &id) == 0, "timer_create");
	struct itimerspec its = {{0, 30000000}, {0, 30000000}};
	zdtm_syscall(timer_settime(id, 0, &its, NULL) == 0, "timer_settime");
	while (fired < 2)
		pause();
	zdtm_checkpoint_here();
	struct itimerspec cur;
	zdtm_syscall(timer_gettime(id, &cur) == 0, "timer_gettime on the old id");
	zdtm_check(cur.it_interval.tv_nsec == 30000000, "interval %ld ns", cur.it_interval.tv_nsec);
	int start = fired;
	sigset_t none;
	sigemptyset(&none);
	while (fired < start + 2)
		sigsuspend(&none);
	zdtm_check(!bad_value, "a timer signal without the value or SI_TIMER");
	zdtm_pass();
}
