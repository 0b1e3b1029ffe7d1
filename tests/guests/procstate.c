/* Prints the process state a program inherits at execve(2): open file
 * descriptors, umask, resource limits, nice value, scheduling policy and
 * personality. A supervisor must not leak its own fds into the tracee or
 * change any of these. */
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>

static void fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		char path[64], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		/* pipe:[inode] differs between runs; the kind does not. */
		char *bracket = strchr(target, '[');
		if (bracket)
			*bracket = 0;
		printf("fd %s: %s\n", e->d_name, target);
	}
	closedir(d);
}

int main(void)
{
	fds();
	mode_t mask = umask(0);
	printf("umask %03o\n", mask);
	static const struct { int res; const char *name; } limits[] = {
		{ RLIMIT_AS, "AS" }, { RLIMIT_CORE, "CORE" }, { RLIMIT_CPU, "CPU" },
		{ RLIMIT_DATA, "DATA" }, { RLIMIT_FSIZE, "FSIZE" },
		{ RLIMIT_MEMLOCK, "MEMLOCK" }, { RLIMIT_NOFILE, "NOFILE" },
		{ RLIMIT_NPROC, "NPROC" }, { RLIMIT_STACK, "STACK" },
		{ RLIMIT_SIGPENDING, "SIGPENDING" },
	};
	for (unsigned i = 0; i < sizeof limits / sizeof limits[0]; i++) {
		struct rlimit r;
		getrlimit(limits[i].res, &r);
		printf("rlimit %s %lld %lld\n", limits[i].name, (long long)r.rlim_cur,
		       (long long)r.rlim_max);
	}
	printf("nice %d\n", getpriority(PRIO_PROCESS, 0));
	printf("sched policy %d\n", sched_getscheduler(0));
	printf("personality %#x\n", personality(0xffffffff));
	return 0;
}
