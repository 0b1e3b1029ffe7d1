/* Pending signals across a restore: a process and one thread with
 * blocked signals waiting, each with its siginfo.
 *
 * argv[1]: a directory. With SIGUSR1, SIGUSR2 and SIGRTMIN blocked, main
 * queues SIGUSR2 with value 42 to the process (sigqueue(3): shared
 * pending), SIGRTMIN with value 7 to its thread (pthread_sigqueue(3):
 * the thread's own), and raises SIGUSR1 with kill(2) (SI_USER, si_pid
 * its own pid). DIR/pid appears, then both count 60 ticks of 20 ms
 * (nanosleep(2)), main writing "tick N" lines through its fd's offset
 * to DIR/ticks. Then each takes its signals with sigwaitinfo(2) and
 * DIR/out gets what they carried; exit 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char thread_line[128];

static void ticks(FILE *f)
{
	for (int i = 1; i <= 60; i++) {
		if (f)
			fprintf(f, "tick %d\n", i);
		struct timespec ts = {0, 20 * 1000 * 1000};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
}

static void *thread(void *arg)
{
	sigset_t set;
	siginfo_t si;
	ticks(NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	int sig = sigwaitinfo(&set, &si);
	snprintf(thread_line, sizeof thread_line, "thread: sig %s value %d code %d\n",
		 sig == SIGRTMIN ? "SIGRTMIN" : "other", si.si_value.sival_int, si.si_code);
	return arg;
}

int main(int argc, char **argv)
{
	char path[4096], tmp[4096];
	sigset_t set;
	siginfo_t si;
	pthread_t th;
	if (argc < 2)
		return 2;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_create(&th, NULL, thread, NULL);
	int me = getpid();
	sigqueue(me, SIGUSR2, (union sigval){.sival_int = 42});
	pthread_sigqueue(th, SIGRTMIN, (union sigval){.sival_int = 7});
	kill(me, SIGUSR1);
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", argv[1]);
	snprintf(path, sizeof path, "%s/pid", argv[1]);
	FILE *p = fopen(tmp, "w");
	fprintf(p, "%d\n", me);
	fclose(p);
	rename(tmp, path);
	snprintf(path, sizeof path, "%s/ticks", argv[1]);
	FILE *t = fopen(path, "w");
	setvbuf(t, NULL, _IONBF, 0);
	ticks(t);
	pthread_join(th, NULL);
	snprintf(path, sizeof path, "%s/out", argv[1]);
	FILE *out = fopen(path, "w");
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	int sig = sigwaitinfo(&set, &si);
	fprintf(out, "main: sig %s value %d code %d\n", sig == SIGUSR2 ? "SIGUSR2" : "other",
		si.si_value.sival_int, si.si_code);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sig = sigwaitinfo(&set, &si);
	fprintf(out, "main: sig %s code %d from self %s\n", sig == SIGUSR1 ? "SIGUSR1" : "other",
		si.si_code, si.si_pid == me ? "yes" : "no");
	fputs(thread_line, out);
	sigpending(&set);
	fprintf(out, "still pending: %d\n", sigismember(&set, SIGUSR1) + sigismember(&set, SIGUSR2));
	fclose(out);
	return 0;
}
