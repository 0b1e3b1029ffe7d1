/* Per-process settings: umask 027, RLIMIT_NOFILE and RLIMIT_CORE soft
 * limits lowered, the thread name (PR_SET_NAME), SIGPIPE ignored and a
 * SIGHUP handler with SA_RESTART: all the same after the restore. */
#include "zdtm.h"
#include <sys/prctl.h>
#include <sys/resource.h>

static void on_hup(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	umask(027);
	struct rlimit nofile, core;
	getrlimit(RLIMIT_NOFILE, &nofile);
	nofile.rlim_cur = 200;
	zdtm_syscall(setrlimit(RLIMIT_NOFILE, &nofile) == 0, "setrlimit");
	core = (struct rlimit){0, 4096 * 1024};
	zdtm_syscall(setrlimit(RLIMIT_CORE, &core) == 0, "setrlimit");
	zdtm_syscall(prctl(PR_SET_NAME, "zdtm-name") == 0, "PR_SET_NAME");
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_hup, .sa_flags = SA_RESTART};
	zdtm_syscall(sigaction(SIGHUP, &sa, NULL) == 0, "sigaction");
	zdtm_checkpoint_here();
	mode_t old = umask(0);
	zdtm_check(old == 027, "umask %o", old);
	struct rlimit r;
	getrlimit(RLIMIT_NOFILE, &r);
	zdtm_check(r.rlim_cur == 200 && r.rlim_max == nofile.rlim_max, "RLIMIT_NOFILE %lu/%lu",
		   (unsigned long)r.rlim_cur, (unsigned long)r.rlim_max);
	getrlimit(RLIMIT_CORE, &r);
	zdtm_check(r.rlim_cur == 0 && r.rlim_max == 4096 * 1024, "RLIMIT_CORE");
	char name[32] = {0};
	prctl(PR_GET_NAME, name);
	zdtm_check(strcmp(name, "zdtm-name") == 0, "name '%s'", name);
	struct sigaction cur;
	sigaction(SIGPIPE, NULL, &cur);
	zdtm_check(cur.sa_handler == SIG_IGN, "SIGPIPE not ignored");
	sigaction(SIGHUP, NULL, &cur);
	zdtm_check(cur.sa_handler == on_hup && (cur.sa_flags & SA_RESTART), "SIGHUP handler");
	zdtm_pass();
}
