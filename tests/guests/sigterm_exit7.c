/* Handles SIGTERM (sent from outside, after the pid file appears) by
 * exiting 7. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig)
{
	static const char msg[] = "got SIGTERM\n";
	write(1, msg, sizeof msg - 1);
	_exit(7);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	/* Announce readiness only once the handler is installed. */
	FILE *f = fopen("pid.tmp", "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename("pid.tmp", "pid");
	for (;;)
		pause();
}
