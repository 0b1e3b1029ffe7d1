/* The parent forks a child that publishes its pid and waits for a byte on
 * a pipe. The test sends SIGSTOP and then SIGCONT to the child from outside;
 * the parent reports what waitpid(WUNTRACED|WCONTINUED) saw, publishing each
 * step in a file the test waits for, then releases the child. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

static void publish(const char *name, const char *text)
{
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%s.tmp", name);
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	rename(tmp, name);
}

int main(void)
{
	int go[2];
	if (pipe(go) != 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		char c;
		close(go[1]);
		char pid[32];
		snprintf(pid, sizeof pid, "%d\n", getpid());
		publish("child.pid", pid);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(go[0]);
	int status;
	pid_t w = waitpid(child, &status, WUNTRACED);
	if (w == child && WIFSTOPPED(status)) {
		printf("child stopped by signal %d\n", WSTOPSIG(status));
		publish("stopped", "1\n");
	} else {
		printf("unexpected first wait: ret=%d status=%#x\n", w, status);
		return 1;
	}
	w = waitpid(child, &status, WCONTINUED);
	if (w == child && WIFCONTINUED(status))
		printf("child continued\n");
	else {
		printf("unexpected second wait: ret=%d status=%#x\n", w, status);
		return 1;
	}
	fflush(stdout);
	write(go[1], "x", 1);
	w = waitpid(child, &status, 0);
	if (w == child && WIFEXITED(status))
		printf("child exited %d\n", WEXITSTATUS(status));
	else
		printf("unexpected third wait: ret=%d status=%#x\n", w, status);
	return 0;
}
