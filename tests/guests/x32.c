/* x32-ABI system calls (nr | __X32_SYSCALL_BIT) have their own table in
 * the kernel; a filter that only knows x86_64 numbers must not let them
 * through. Under isotrace they fail with ENOSYS (natively too when the kernel
 * lacks CONFIG_X86_X32_ABI). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define X32_BIT 0x40000000L

static void try(const char *name, long nr, long a, long b, long c, long d)
{
	errno = 0;
	long ret = syscall(X32_BIT | nr, a, b, c, d);
	printf("x32 %s: ret=%s errno=%s\n", name, ret < 0 ? "-1" : "ok",
	       ret < 0 ? strerrorname_np(errno) : "none");
}

int main(void)
{
	try("getpid", SYS_getpid, 0, 0, 0, 0);
	try("openat", SYS_openat, AT_FDCWD, (long)"/etc/hostname", O_RDONLY, 0);
	try("write", SYS_write, 1, (long)"x32 write leaked\n", 17, 0);
	/* x32-only numbers 512..547 (e.g. 520 = execve). */
	try("execve(520)", 520, (long)"/bin/true", 0, 0, 0);
	return 0;
}
