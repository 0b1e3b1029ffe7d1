/* vfork+execve and posix_spawn, with exit statuses checked by the parent. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

extern char **environ;

static void report(const char *what, pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) != pid) {
		perror("waitpid");
		exit(1);
	}
	if (WIFEXITED(status))
		printf("%s: exited %d\n", what, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		printf("%s: killed by %d\n", what, WTERMSIG(status));
	fflush(stdout);
}

int main(void)
{
	for (int i = 0; i < 20; i++) {
		char n[16];
		snprintf(n, sizeof n, "vfork-%d", i);
		char *argv[] = { "/bin/echo", n, NULL };
		fflush(stdout);
		pid_t pid = vfork();
		if (pid == 0) {
			execve(argv[0], argv, environ);
			_exit(127);
		}
		report("vfork+exec echo", pid);
	}

	pid_t pid = vfork();
	if (pid == 0)
		_exit(5);
	report("vfork+_exit", pid);

	char *sh[] = { "/bin/sh", "-c", "echo spawned; exit 3", NULL };
	if (posix_spawn(&pid, sh[0], NULL, NULL, sh, environ) != 0) {
		perror("posix_spawn");
		return 1;
	}
	report("posix_spawn sh", pid);

	char *missing[] = { "/nonexistent/isotrace-missing", NULL };
	int err = posix_spawn(&pid, missing[0], NULL, NULL, missing, environ);
	if (err == 0)
		report("posix_spawn missing", pid);
	else
		printf("posix_spawn missing: error %d\n", err);

	char *p[] = { "true", NULL };
	if (posix_spawnp(&pid, "true", NULL, NULL, p, environ) != 0) {
		perror("posix_spawnp");
		return 1;
	}
	report("posix_spawnp true", pid);
	return 0;
}
