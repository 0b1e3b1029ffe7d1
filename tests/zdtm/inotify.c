/* An inotify instance watching a directory (IN_CREATE|IN_DELETE) and a
 * file (IN_MODIFY): after the restore, creating a file in the directory
 * and writing the watched file give those events, with the same watch
 * descriptors. */
#include "zdtm.h"
#include <sys/inotify.h>

int main(int argc, char **argv)
{
	zdtm_init(argc, argv);
	zdtm_syscall(mkdir(zdtm_path("watched"), 0755) == 0, "mkdir");
	int f = open(zdtm_path("file"), O_WRONLY | O_CREAT, 0644);
	zdtm_syscall(f >= 0, "open");
	int in = inotify_init1(IN_NONBLOCK);
	zdtm_syscall(in >= 0, "inotify_init1");
	int wd_dir = inotify_add_watch(in, zdtm_path("watched"), IN_CREATE | IN_DELETE);
	int wd_file = inotify_add_watch(in, zdtm_path("file"), IN_MODIFY);
	zdtm_syscall(wd_dir >= 0 && wd_file >= 0, "inotify_add_watch");
	zdtm_checkpoint_here();
	int c = open(zdtm_path("watched/new"), O_WRONLY | O_CREAT, 0644);
	zdtm_syscall(c >= 0, "create");
	zdtm_syscall(write(f, "x", 1) == 1, "write");
	char buf[4096] __attribute__((aligned(8)));
	int seen_create = 0, seen_modify = 0;
	for (int tries = 0; tries < 2 && !(seen_create && seen_modify); tries++) {
		ssize_t n = read(in, buf, sizeof buf);
		zdtm_syscall(n > 0, "read events");
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->wd == wd_dir && (e->mask & IN_CREATE) && strcmp(e->name, "new") == 0)
				seen_create = 1;
			if (e->wd == wd_file && (e->mask & IN_MODIFY))
				seen_modify = 1;
			p += sizeof *e + e->len;
		}
	}
	zdtm_check(seen_create && seen_modify, "create %d modify %d", seen_create, seen_modify);
	zdtm_pass();
}
