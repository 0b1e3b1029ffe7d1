/* A signalfd for SIGUSR2 and SIGRTMIN+1 (both blocked), with SIGUSR2
 * pending from kill(2) and SIGRTMIN+1 queued with a value: after the
 * restore the signalfd reads both, with their siginfo, and its mask. */
#include "zdtm.h"
#include <sys/signalfd.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigaddset(&m, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &m, NULL);
	int s = signalfd(-1, &m, SFD_NONBLOCK);
	zdtm_syscall(s >= 0, "signalfd");
	zdtm_syscall(kill(getpid(), SIGUSR2) == 0, "kill");
	union sigval v = {.sival_int = 4242};
	zdtm_syscall(sigqueue(getpid(), SIGRTMIN + 1, v) == 0, "sigqueue");
	zdtm_checkpoint_here();
	struct signalfd_siginfo si;
	zdtm_syscall(read(s, &si, sizeof si) == sizeof si, "first read");
	zdtm_check(si.ssi_signo == SIGUSR2 && si.ssi_code == SI_USER, "first: signal %u code %d", si.ssi_signo,
		   si.ssi_code);
	zdtm_syscall(read(s, &si, sizeof si) == sizeof si, "second read");
	zdtm_check(si.ssi_signo == (unsigned)SIGRTMIN + 1 && si.ssi_int == 4242 && si.ssi_code == SI_QUEUE,
		   "second: signal %u value %d code %d", si.ssi_signo, si.ssi_int, si.ssi_code);
	zdtm_check(read(s, &si, sizeof si) < 0 && errno == EAGAIN, "a third signal");
	zdtm_syscall(kill(getpid(), SIGUSR2) == 0, "kill");
	zdtm_check(read(s, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2, "the mask lost SIGUSR2");
	zdtm_pass();
}
