/* A memfd held only by its fd (never mapped) with 20 KiB of data and
 * an offset: after the restore the data is there, at that offset. */
#include "zdtm.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int m = memfd_create("only-fd", 0);
	zdtm_syscall(m >= 0, "memfd_create");
	static char data[20480];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)('a' + i % 26);
	zdtm_syscall(write(m, data, sizeof data) == sizeof data, "write");
	zdtm_syscall(lseek(m, 100, SEEK_SET) == 100, "lseek");
	zdtm_checkpoint_here();
	zdtm_check(lseek(m, 0, SEEK_CUR) == 100, "offset %ld", (long)lseek(m, 0, SEEK_CUR));
	static char got[20480];
	zdtm_syscall(pread(m, got, sizeof got, 0) == sizeof got, "pread");
	zdtm_check(memcmp(got, data, sizeof data) == 0, "the memfd's data differs");
	char link[64], target[256] = {0};
	snprintf(link, sizeof link, "/proc/self/fd/%d", m);
	zdtm_syscall(readlink(link, target, sizeof target - 1) > 0, "readlink");
	zdtm_check(strncmp(target, "/memfd:only-fd", 14) == 0, "the memfd is now %s", target);
	zdtm_pass();
}
