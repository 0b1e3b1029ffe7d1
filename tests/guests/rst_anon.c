/* eventfd, signalfd, timerfd and epoll across a restore.
 *
 * argv[1]: a directory. An eventfd starts at 5; an epoll watches a pipe
 * (data 1, level-triggered) and the eventfd (data 2, edge-triggered);
 * a signalfd takes SIGUSR1 (blocked); a periodic timerfd fires every
 * 40 ms. DIR/pid appears, then main reads the timerfd 60 times (blocking
 * in read(2)), writing "tick N" through its fd's offset to DIR/ticks.
 * After tick 45 it adds 3 to the eventfd, raises SIGUSR1 and writes a
 * byte into the pipe; epoll_wait, the eventfd's count, the signalfd's
 * siginfo and whether the timer went on ticking go to DIR/out; exit 0. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[4096], tmp[4096];
	int p[2];
	if (argc < 2 || pipe(p) != 0)
		return 2;
	int efd = eventfd(5, EFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u64 = 2};
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	int sfd = signalfd(-1, &mask, 0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = {{0, 40 * 1000 * 1000}, {0, 40 * 1000 * 1000}};
	timerfd_settime(tfd, 0, &its, NULL);
	/* The eventfd has 5 and the edge was not consumed: drain the
	 * first report so only the later write shows. */
	struct epoll_event got[4];
	int first = epoll_wait(ep, got, 4, 0);
	snprintf(tmp, sizeof tmp, "%s/pid.tmp", argv[1]);
	snprintf(path, sizeof path, "%s/pid", argv[1]);
	FILE *f = fopen(tmp, "w");
	fprintf(f, "%d\n", getpid());
	fclose(f);
	rename(tmp, path);
	snprintf(path, sizeof path, "%s/ticks", argv[1]);
	FILE *t = fopen(path, "w");
	setvbuf(t, NULL, _IONBF, 0);
	for (int i = 1; i <= 60; i++) {
		uint64_t n;
		if (read(tfd, &n, 8) != 8 || n < 1)
			return 3;
		fprintf(t, "tick %d\n", i);
		if (i == 45) {
			uint64_t three = 3;
			if (write(efd, &three, 8) != 8)
				return 4;
			raise(SIGUSR1);
			if (write(p[1], "x", 1) != 1)
				return 5;
		}
	}
	snprintf(path, sizeof path, "%s/out", argv[1]);
	FILE *out = fopen(path, "w");
	fprintf(out, "first epoll_wait %d\n", first);
	int n = epoll_wait(ep, got, 4, 1000);
	uint64_t mask_seen = 0;
	for (int i = 0; i < n; i++)
		mask_seen |= got[i].data.u64;
	fprintf(out, "epoll_wait %d data mask %llu\n", n, (unsigned long long)mask_seen);
	uint64_t count = 0;
	ssize_t r = read(efd, &count, 8);
	fprintf(out, "eventfd read %zd count %llu\n", r, (unsigned long long)count);
	struct signalfd_siginfo si = {0};
	r = read(sfd, &si, sizeof si);
	fprintf(out, "signalfd read %zd signo %u code %d\n", r, si.ssi_signo, si.ssi_code);
	uint64_t ticks = 0;
	fprintf(out, "timer still ticks %d\n", read(tfd, &ticks, 8) == 8 && ticks >= 1);
	fclose(out);
	return 0;
}
