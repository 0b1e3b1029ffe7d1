/* An epoll whose interest list holds a pipe's read end (level-triggered,
 * data 7), an eventfd (edge-triggered, data 9) and a second pipe for
 * EPOLLOUT only (data 11): after the restore exactly the ready ones are
 * reported, with their data, and a later write wakes epoll_wait. */
#include "zdtm.h"
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int p[2], q[2];
	zdtm_syscall(pipe(p) == 0 && pipe(q) == 0, "pipe");
	int e = eventfd(0, EFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	zdtm_syscall(e >= 0 && ep >= 0, "create");
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
	zdtm_syscall(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "add pipe");
	ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u64 = 9};
	zdtm_syscall(epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) == 0, "add eventfd");
	ev = (struct epoll_event){.events = EPOLLOUT, .data.u64 = 11};
	zdtm_syscall(epoll_ctl(ep, EPOLL_CTL_ADD, q[1], &ev) == 0, "add pipe write end");
	zdtm_syscall(write(p[1], "x", 1) == 1, "write");
	zdtm_checkpoint_here();
	struct epoll_event got[8];
	int n = epoll_wait(ep, got, 8, 0);
	uint64_t mask = 0;
	for (int i = 0; i < n; i++)
		mask |= 1ull << got[i].data.u64;
	zdtm_check(n == 2 && mask == ((1ull << 7) | (1ull << 11)), "%d ready, data mask %#llx", n,
		   (unsigned long long)mask);
	zdtm_check(fcntl(ep, F_GETFD) == FD_CLOEXEC, "the epoll fd lost FD_CLOEXEC");
	uint64_t one = 1;
	zdtm_syscall(write(e, &one, 8) == 8, "write eventfd");
	n = epoll_wait(ep, got, 8, 1000);
	mask = 0;
	for (int i = 0; i < n; i++)
		mask |= 1ull << got[i].data.u64;
	zdtm_check(mask & (1ull << 9), "the eventfd's edge was not reported (mask %#llx)", (unsigned long long)mask);
	zdtm_check(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL) == 0, "the pipe is not in the interest list");
	zdtm_pass();
}
