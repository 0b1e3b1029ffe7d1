/* Signal handlers and alternate stacks across a restore.
 *
 * argv[1]: a directory. Main installs a SIGUSR1 handler (SA_SIGINFO |
 * SA_ONSTACK) and an alternate stack; a second thread sets up its own
 * alternate stack and a SIGUSR2 handler (SA_ONSTACK). DIR/pid appears,
 * then main writes "tick N" lines (through its fd's offset) to DIR/ticks,
 * 20 ms apart, 60 of them. After tick 40 it raises SIGUSR1, sends SIGUSR2
 * to the thread, and calls setgid(getgid()), which in a multi-threaded
 * glibc program signals every thread with glibc's internal SIGSETXID, so
 * it needs glibc's own handler to be in place. DIR/out gets what each
 * handler saw (on its thread's alternate stack or not, si_code) and
 * whether setgid returned; exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STACK (64 * 1024)

static char main_stack[STACK], thread_stack[STACK];
static volatile int usr1, usr2, usr1_onstack, usr2_onstack, usr1_code, done_flag;

static int on(char *stack)
{
	char here;
	return &here >= stack && &here < stack + STACK;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	usr1++;
	usr1_onstack = on(main_stack);
	usr1_code = si->si_code;
}

static void on_usr2(int sig)
{
	usr2++;
	usr2_onstack = on(thread_stack);
}

static void set_altstack(char *stack)
{
	stack_t ss = {.ss_sp = stack, .ss_size = STACK, .ss_flags = 0};
	if (sigaltstack(&ss, NULL) != 0)
		exit(3);
}

static void tick(void)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void *thread(void *arg)
{
	set_altstack(thread_stack);
	while (!done_flag)
		tick();
	return arg;
}

int main(int argc, char **argv)
{
	char path[4096], tmp[4096];
	pthread_t th;
	if (argc < 2)
		return 2;
	set_altstack(main_stack);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR2, &sa, NULL);
	pthread_create(&th, NULL, thread, NULL);
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", argv[1]);
	snprintf(path, sizeof path, "%s/pid", argv[1]);
	FILE *p = fopen(tmp, "w");
	fprintf(p, "%d\n", getpid());
	fclose(p);
	rename(tmp, path);
	snprintf(path, sizeof path, "%s/ticks", argv[1]);
	FILE *t = fopen(path, "w");
	setvbuf(t, NULL, _IONBF, 0);
	int setxid = -2;
	for (int i = 1; i <= 60; i++) {
		fprintf(t, "tick %d\n", i);
		tick();
		if (i == 40) {
			raise(SIGUSR1);
			pthread_kill(th, SIGUSR2);
			setxid = setgid(getgid());
		}
	}
	done_flag = 1;
	pthread_join(th, NULL);
	snprintf(path, sizeof path, "%s/out", argv[1]);
	FILE *out = fopen(path, "w");
	fprintf(out, "usr1 %d onstack %d code %d\n", usr1, usr1_onstack, usr1_code);
	fprintf(out, "usr2 %d onstack %d\n", usr2, usr2_onstack);
	fprintf(out, "setgid %d\n", setxid);
	fclose(out);
	return 0;
}
