/* /dev/null (O_WRONLY), /dev/zero (O_RDONLY), /dev/urandom and
 * /dev/full: after the restore each fd is that device again, with its
 * access mode and O_NONBLOCK where it was set. */
#include "zdtm.h"
#include <sys/sysmacros.h>

static void is_dev(int fd, int minor, int mode)
{
	struct stat st;
	zdtm_syscall(fstat(fd, &st) == 0, "fstat %d", fd);
	zdtm_check(S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == (unsigned)minor,
		   "fd %d is %u:%u, not 1:%d", fd, major(st.st_rdev), minor(st.st_rdev), minor);
	zdtm_check((fcntl(fd, F_GETFL) & O_ACCMODE) == mode, "fd %d mode", fd);
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int null = open("/dev/null", O_WRONLY);
	int zero = open("/dev/zero", O_RDONLY);
	int rnd = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
	int full = open("/dev/full", O_RDWR);
	zdtm_syscall(null >= 0 && zero >= 0 && rnd >= 0 && full >= 0, "open");
	zdtm_checkpoint_here();
	is_dev(null, 3, O_WRONLY);
	is_dev(zero, 5, O_RDONLY);
	is_dev(rnd, 9, O_RDONLY);
	is_dev(full, 7, O_RDWR);
	zdtm_check(fcntl(rnd, F_GETFL) & O_NONBLOCK, "/dev/urandom lost O_NONBLOCK");
	char buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
	zdtm_check(read(zero, buf, 8) == 8 && buf[7] == 0, "/dev/zero");
	zdtm_check(write(null, buf, 8) == 8, "/dev/null");
	zdtm_check(write(full, buf, 1) < 0 && errno == ENOSPC, "/dev/full");
	zdtm_pass();
}
