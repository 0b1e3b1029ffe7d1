/* Untrapped syscall: N raw getppid() calls; prints ns per call.
 * Uses syscall(2) so that no libc caching can skip the kernel entry.
 *
 * With BENCH_SECCOMP_ALLOW=1 in the environment, it first installs a
 * one-instruction RET_ALLOW seccomp filter. That is the floor for any
 * seccomp-based supervisor: the filter is fully covered by the kernel's
 * action cache, yet every syscall still takes the syscall-work entry path
 * (SYSCALL_WORK_SECCOMP) instead of the fast path.
 * Usage: getppid [N] */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "bench.h"

static void install_allow_all(void)
{
	struct sock_filter insn[] = {
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 1, .filter = insn };
	/* seccomp(2): without CAP_SYS_ADMIN, NO_NEW_PRIVS must be set first. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("PR_SET_NO_NEW_PRIVS");
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		die("seccomp");
}

int main(int argc, char **argv)
{
	long n = arg_count(argc, argv, 1, 2000000);
	const char *allow = getenv("BENCH_SECCOMP_ALLOW");
	if (allow != NULL && strcmp(allow, "1") == 0)
		install_allow_all();
	for (int i = 0; i < 1000; i++) /* warm-up */
		syscall(SYS_getppid);
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (syscall(SYS_getppid) < 0)
			die("getppid");
	double t1 = now_ns();
	printf("%.2f ns/call\n", (t1 - t0) / (double)n);
	return 0;
}
