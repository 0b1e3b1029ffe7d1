/* Run ONLY under isotrace, whose supervisor is this guest's parent: try to
 * ptrace or write into it. Every attempt must fail with EPERM. The address
 * written to is bogus, so a supervisor that fails open gets EFAULT (and the
 * test fails) rather than corrupted memory. Never run this natively. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

static void result(const char *what, long ret)
{
	printf("%s: ret=%ld errno=%s\n", what, ret, ret < 0 ? strerrorname_np(errno) : "none");
	fflush(stdout);
}

int main(void)
{
	pid_t sup = getppid();
	errno = 0;
	long ret = ptrace(PTRACE_SEIZE, sup, 0, 0);
	result("ptrace(PTRACE_SEIZE, supervisor)", ret);
	if (ret == 0)
		ptrace(PTRACE_DETACH, sup, 0, 0);

	errno = 0;
	ret = ptrace(PTRACE_ATTACH, sup, 0, 0);
	result("ptrace(PTRACE_ATTACH, supervisor)", ret);
	if (ret == 0) {
		int status;
		waitpid(sup, &status, __WALL);
		ptrace(PTRACE_DETACH, sup, 0, 0);
	}

	char buf[8] = "pwned!!";
	struct iovec local = { buf, sizeof buf };
	struct iovec remote = { (void *)0x10, sizeof buf };
	errno = 0;
	ret = process_vm_writev(sup, &local, 1, &remote, 1, 0);
	result("process_vm_writev(supervisor)", ret);

	errno = 0;
	ret = process_vm_readv(sup, &local, 1, &remote, 1, 0);
	result("process_vm_readv(supervisor)", ret);
	return 0;
}
