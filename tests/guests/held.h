/* What the guests of tests/checkpoint.rs's refusal tests share: build a
 * state a checkpoint must refuse, say so through a pid file, then sleep
 * until SIGUSR1 and check the state is intact (refused_and_intact).
 *
 *   held_init();            first: SIGUSR1 blocked, its handler set
 *   held_ready(PIDFILE);    the state is built: PIDFILE holds the pid
 *   held_wait();            sleeps until SIGUSR1
 *   held_put(PATH, TEXT);   writes TEXT to PATH whole (write + rename) */
#ifndef HELD_H
#define HELD_H

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t held_woken;
static sigset_t held_unblocked;

static void held_on_usr1(int sig)
{
	(void)sig;
	held_woken = 1;
}

static void held_put(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		_exit(3);
}

/* SIGUSR1 is blocked from here on, so one sent early stays pending. */
static void held_init(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &held_unblocked);
	struct sigaction sa = {.sa_handler = held_on_usr1};
	sigaction(SIGUSR1, &sa, NULL);
}

static void held_ready(const char *pidfile)
{
	char pid[32];
	snprintf(pid, sizeof pid, "%d", getpid());
	held_put(pidfile, pid);
}

static void held_wait(void)
{
	while (!held_woken)
		sigsuspend(&held_unblocked);
}

#endif
