/* Waits for SIGUSR2, whose handler only counts it. argv[1]: a directory;
 * argv[2]: "pause" (pause(2), SIGUSR2 never blocked) or "sigsuspend"
 * (SIGUSR2 blocked, sigsuspend(2) with an empty mask). Writes DIR/pid,
 * then sleeps; when the call returns (EINTR, after the handler ran) it
 * writes "woken N EINTR" to DIR/out, N the handler's count, and exits 0.
 * A restore that ran the handler and then issued the call again would
 * leave it asleep for good. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "put.h"

static volatile sig_atomic_t count;

static void on_usr2(int sig)
{
	(void)sig;
	count++;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int use_pause = strcmp(argv[2], "pause") == 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t usr2, empty;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigemptyset(&empty);
	if (!use_pause)
		sigprocmask(SIG_BLOCK, &usr2, NULL);
	char text[64];
	snprintf(text, sizeof text, "%d\n", (int)getpid());
	put(argv[1], "pid", text);
	int rc = use_pause ? pause() : sigsuspend(&empty);
	snprintf(text, sizeof text, "woken %d %s\n", (int)count,
		 rc == -1 && errno == EINTR ? "EINTR" : "?");
	put(argv[1], "out", text);
	return 0;
}
