/* A periodic CLOCK_MONOTONIC timerfd (every 20 ms) read at the
 * checkpoint, and a one-shot CLOCK_REALTIME one set 60 s ahead: after
 * the restore the periodic one goes on firing, and the one-shot one is
 * still armed with its interval (0) and about what remained. */
#include "zdtm.h"
#include <stdint.h>
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int t = timerfd_create(CLOCK_MONOTONIC, 0);
	int o = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	zdtm_syscall(t >= 0 && o >= 0, "timerfd_create");
	struct itimerspec its = {{0, 20000000}, {0, 20000000}};
	zdtm_syscall(timerfd_settime(t, 0, &its, NULL) == 0, "settime");
	struct itimerspec one = {{0, 0}, {60, 0}};
	zdtm_syscall(timerfd_settime(o, 0, &one, NULL) == 0, "settime");
	uint64_t n;
	zdtm_syscall(read(t, &n, 8) == 8, "read");
	zdtm_checkpoint_here();
	for (int i = 0; i < 3; i++)
		zdtm_syscall(read(t, &n, 8) == 8 && n >= 1, "periodic read %d after the restore", i);
	struct itimerspec cur;
	zdtm_syscall(timerfd_gettime(t, &cur) == 0, "gettime");
	zdtm_check(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 20000000, "interval changed");
	zdtm_syscall(timerfd_gettime(o, &cur) == 0, "gettime");
	zdtm_check(cur.it_value.tv_sec > 30 && cur.it_value.tv_sec <= 60, "one-shot has %lds left",
		   (long)cur.it_value.tv_sec);
	zdtm_check(read(o, &n, 8) < 0 && errno == EAGAIN, "the one-shot fired early");
	zdtm_pass();
}
