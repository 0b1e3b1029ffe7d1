/* A periodic timerfd (every 20 ms) nobody reads: about ten expirations
 * are pending at the checkpoint. The first read after the restore must
 * count at least all of those (timerfd_create(2): the number of
 * expirations since the last read), not 1. The time the program spent
 * checkpointed is not required to count (the timer goes on as if the
 * program had been stopped, as CRIU does). */
#include "zdtm.h"
#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>

#define PERIOD_NS 20000000LL

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	zdtm_syscall(t >= 0, "timerfd_create");
	struct itimerspec its = {{0, PERIOD_NS}, {0, PERIOD_NS}};
	long long armed = now_ns();
	zdtm_syscall(timerfd_settime(t, 0, &its, NULL) == 0, "settime");
	/* Let expirations pile up (not a synchronisation: any length works). */
	struct timespec nap = {0, 200000000};
	while (nanosleep(&nap, &nap) != 0)
		;
	/* At least this many are pending from here on. */
	long long pending = (now_ns() - armed) / PERIOD_NS;
	zdtm_checkpoint_here();
	uint64_t n = 0;
	zdtm_syscall(read(t, &n, 8) == 8, "read");
	zdtm_check((long long)n >= pending, "%llu expirations; %lld were pending at the checkpoint",
		   (unsigned long long)n, pending);
	zdtm_pass();
}
