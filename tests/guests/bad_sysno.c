/* System call numbers the kernel does not know must get ENOSYS, not be
 * silently allowed or crash the supervisor. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void)
{
	long nrs[] = { 1000, 548, 4095, 0x3fffffff, -2 };
	for (unsigned i = 0; i < sizeof nrs / sizeof nrs[0]; i++) {
		errno = 0;
		long ret = syscall(nrs[i], 1, 2, 3);
		printf("syscall(%ld): ret=%ld errno=%s\n", nrs[i], ret,
		       ret < 0 ? strerrorname_np(errno) : "none");
	}
	printf("getpid still works: %d\n", (pid_t)syscall(SYS_getpid) == getpid());
	return 0;
}
