/* Writing through /proc/PID/mem ignores page protections and could patch
 * the supervisor's scratch region or the tracee's code behind the
 * supervisor's back; under isolation every spelling of it must be refused
 * with EACCES when opened for writing. Extra spellings come from argv. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void try_open(const char *path, int flags, const char *how)
{
	errno = 0;
	int fd = open(path, flags);
	printf("%s %s: %s\n", how, path, fd < 0 ? strerrorname_np(errno) : "opened");
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	char pid_mem[64], tid_mem[64];
	snprintf(pid_mem, sizeof pid_mem, "/proc/%d/mem", getpid());
	snprintf(tid_mem, sizeof tid_mem, "/proc/self/task/%d/mem", gettid());
	const char *paths[] = {"/proc/self/mem", "/proc/thread-self/mem", pid_mem,
			       tid_mem, "/proc/self/../self/mem",
			       "/proc/self/root/proc/self/mem"};
	for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
		try_open(paths[i], O_WRONLY, "wronly");
		try_open(paths[i], O_RDWR, "rdwr");
	}
	for (int i = 1; i < argc; i++) {
		try_open(argv[i], O_WRONLY, "wronly");
		try_open(argv[i], O_RDWR, "rdwr");
	}
	return 0;
}
