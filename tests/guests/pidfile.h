/* The guests' pid file: written to PATH.tmp, then renamed to PATH, so a
 * test polling for PATH never reads it half-written. 0, or -1 if the
 * file could not be made. */
#ifndef GUEST_PIDFILE_H
#define GUEST_PIDFILE_H

#include <stdio.h>
#include <unistd.h>

static int write_pid_file(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", getpid());
	fclose(f);
	return rename(tmp, path);
}

#endif
