/* Two eventfds: a counter holding 42 (O_NONBLOCK) and an EFD_SEMAPHORE
 * one holding 3: after the restore the counter reads 42 at once, the
 * semaphore gives 1 three times, then EAGAIN. */
#include "zdtm.h"
#include <stdint.h>
#include <sys/eventfd.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int e = eventfd(40, EFD_NONBLOCK);
	int s = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	zdtm_syscall(e >= 0 && s >= 0, "eventfd");
	uint64_t two = 2, v;
	zdtm_syscall(write(e, &two, 8) == 8, "write");
	zdtm_checkpoint_here();
	zdtm_check(read(e, &v, 8) == 8 && v == 42, "counter %llu", (unsigned long long)v);
	zdtm_check(read(e, &v, 8) < 0 && errno == EAGAIN, "counter not reset");
	for (int i = 0; i < 3; i++)
		zdtm_check(read(s, &v, 8) == 8 && v == 1, "semaphore read %d gave %llu", i, (unsigned long long)v);
	zdtm_check(read(s, &v, 8) < 0 && errno == EAGAIN, "semaphore not empty after 3");
	zdtm_pass();
}
