/* A unix stream socket (fd 10) connected to a listener outside the
 * group (argv[1], a path). A restore could not connect it again, so a
 * checkpoint must refuse.
 *
 * argv[2]: a pid file, written (write + rename) once connected.
 * argv[3]: a result file: on SIGUSR1 the program writes "x" through the
 * socket, writes "intact" if that worked, and exits. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t woken;

static void on_usr1(int sig)
{
	(void)sig;
	woken = 1;
}

static void put(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		_exit(3);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	struct sigaction sa = {.sa_handler = on_usr1};
	sigaction(SIGUSR1, &sa, NULL);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	snprintf(un.sun_path, sizeof un.sun_path, "%s", argv[1]);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&un, sizeof un) != 0 || dup2(s, 10) != 10)
		return 4;
	close(s);
	char pid[32];
	snprintf(pid, sizeof pid, "%d", getpid());
	put(argv[2], pid);
	while (!woken)
		sigsuspend(&old);
	put(argv[3], write(10, "x", 1) == 1 ? "intact" : "the socket is gone");
	return 0;
}
