/* io_uring would let a tracee perform I/O the supervisor never sees, so it
 * must be refused: io_uring_setup(2) -> ENOSYS under isotrace. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

int main(void)
{
	unsigned char params[120]; /* struct io_uring_params */
	memset(params, 0, sizeof params);
	errno = 0;
	long ret = syscall(SYS_io_uring_setup, 8, params);
	printf("io_uring_setup: ret=%s errno=%s\n", ret < 0 ? "-1" : "fd",
	       ret < 0 ? strerrorname_np(errno) : "none");
	return 0;
}
