/* A thread blocked in read(2) on a unix socket and another in
 * epoll_wait(2) with no timeout at the checkpoint: after the restore
 * both calls complete once the main thread sends a byte. read(2) is
 * restarted transparently; epoll_wait(2) may fail with EINTR, as after
 * any stop (signal(7), "Interruption of system calls ... by stop
 * signals"), and is called again, as programs do. */
#include "zdtm.h"
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static int sv[2], ep;
static pid_t tids[2];

static void *reader(void *arg)
{
	(void)arg;
	__atomic_store_n(&tids[0], (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	char c = 0;
	return read(sv[1], &c, 1) == 1 && c == 'r' ? NULL : (void *)1;
}

static void *poller(void *arg)
{
	(void)arg;
	__atomic_store_n(&tids[1], (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	struct epoll_event ev;
	int n;
	do
		n = epoll_wait(ep, &ev, 1, -1);
	while (n < 0 && errno == EINTR);
	return n == 1 && ev.data.u32 == 5 ? NULL : (void *)2;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	int q[2];
	zdtm_syscall(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && pipe(q) == 0, "socketpair");
	ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 5};
	zdtm_syscall(epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev) == 0, "epoll_ctl");
	pthread_t a, b;
	pthread_create(&a, NULL, reader, NULL);
	pthread_create(&b, NULL, poller, NULL);
	while (!__atomic_load_n(&tids[0], __ATOMIC_SEQ_CST) || !__atomic_load_n(&tids[1], __ATOMIC_SEQ_CST))
		sched_yield();
	zdtm_wait_blocked(tids[0], SYS_read);
	zdtm_wait_blocked(tids[1], SYS_epoll_wait);
	zdtm_checkpoint_here();
	zdtm_syscall(write(sv[0], "r", 1) == 1 && write(q[1], "p", 1) == 1, "write");
	void *ra, *rb;
	pthread_join(a, &ra);
	pthread_join(b, &rb);
	zdtm_check(ra == NULL && rb == NULL, "reader %ld poller %ld", (long)ra, (long)rb);
	zdtm_pass();
}
