/* A child asleep in clock_nanosleep(2) for 300 ms (relative) at the
 * checkpoint: after the restore it wakes up, having slept at least the
 * whole 300 ms of CLOCK_MONOTONIC (the sleep is restarted with what
 * remained, or longer, never cut short). */
#include "zdtm.h"
#include <sys/syscall.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	pid_t kid = fork();
	if (kid == 0) {
		long long t0 = now_ns();
		struct timespec d = {0, 300000000};
		int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
		_exit(rc == 0 && now_ns() - t0 >= 300000000LL ? 0 : 1);
	}
	zdtm_wait_blocked(kid, SYS_clock_nanosleep);
	zdtm_checkpoint_here();
	zdtm_reap_ok(kid, "the sleeper");
	zdtm_pass();
}
