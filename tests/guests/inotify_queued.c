/* An inotify fd (fd 10) with an event queued: it watches the directory
 * of argv[1] for IN_CREATE and creates argv[1].new there, unread. A
 * checkpoint cannot carry queued events and must refuse.
 *
 * argv[1]: a pid file, written (write + rename) once the event is queued.
 * argv[2]: a result file: on SIGUSR1 the program reads its events and
 * writes "intact" if the creation of the pid file's ".new" is among
 * them, else what it found, then exits. */
#include "held.h"
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	held_init();
	char dir[4096], created[4096];
	snprintf(dir, sizeof dir, "%s", argv[1]);
	snprintf(created, sizeof created, "%s.new", argv[1]);
	int in = inotify_init1(IN_NONBLOCK);
	if (in < 0 || dup2(in, 10) != 10 || inotify_add_watch(10, dirname(dir), IN_CREATE) < 0)
		return 4;
	close(in);
	int c = open(created, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (c < 0)
		return 5;
	close(c);
	/* The pid file's own creation queues events too (its .tmp, the
	 * rename does not): the harness reads the pid afterwards anyway. */
	held_ready(argv[1]);
	held_wait();
	char buf[4096] __attribute__((aligned(8)));
	ssize_t n = read(10, buf, sizeof buf);
	const char *want = strrchr(created, '/') + 1;
	for (char *p = buf; n > 0 && p < buf + n;) {
		struct inotify_event *e = (struct inotify_event *)p;
		if ((e->mask & IN_CREATE) && e->len && strcmp(e->name, want) == 0) {
			held_put(argv[2], "intact");
			return 0;
		}
		p += sizeof *e + e->len;
	}
	held_put(argv[2], n > 0 ? "the creation event is gone" : "no events");
	return 1;
}
