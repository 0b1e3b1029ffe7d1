/* Many short-lived processes in batches: half fork+_exit, half fork+exec
 * /bin/true or /bin/false. The parent checks every status. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int total = argc > 1 ? atoi(argv[1]) : 500;
	int batch = 25;
	long sum = 0, expected = 0;
	int bad = 0;
	for (int start = 0; start < total; start += batch) {
		pid_t pids[batch];
		int want[batch];
		int n = 0;
		for (int i = start; i < start + batch && i < total; i++, n++) {
			int mode = i % 4;
			want[n] = mode == 0 ? i % 100 : mode == 1 ? 0 : mode == 2 ? 1 : 0;
			pid_t pid = fork();
			if (pid < 0) {
				perror("fork");
				return 1;
			}
			if (pid == 0) {
				if (mode == 0)
					_exit(i % 100);
				if (mode == 1)
					execl("/bin/true", "true", (char *)NULL);
				else if (mode == 2)
					execl("/bin/false", "false", (char *)NULL);
				else
					_exit(0);
				_exit(127);
			}
			pids[n] = pid;
		}
		for (int k = 0; k < n; k++) {
			int status;
			if (waitpid(pids[k], &status, 0) != pids[k] || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != want[k])
				bad++;
			else
				sum += WEXITSTATUS(status);
			expected += want[k];
		}
	}
	printf("processes=%d bad=%d sum=%ld expected=%ld\n", total, bad, sum, expected);
	return bad != 0;
}
