/* Run ONLY under isotrace: start a marker process in its own session (so it
 * is not in the test's process group), then SIGKILL the supervisor, which is
 * this guest's parent. With the supervisor gone, the guest and the marker
 * must die too (PTRACE_O_EXITKILL). argv[1] is a token the test looks for
 * in /proc/PID/cmdline. Never run this natively. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0)
		return 1;
	pid_t marker = fork();
	if (marker == 0) {
		setsid();
		execlp("sleep", argv[1], "300", (char *)NULL);
		_exit(127);
	}
	close(ready[1]);
	/* The close-on-exec write end closes once the marker has exec'd. */
	char c;
	while (read(ready[0], &c, 1) > 0)
		;
	printf("marker %d started; killing supervisor %d\n", marker, getppid());
	fflush(stdout);
	kill(getppid(), SIGKILL);
	for (;;)
		pause();
}
