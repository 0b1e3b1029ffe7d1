/* put(DIR, NAME, TEXT): writes TEXT to DIR/NAME whole (a temp file, then
 * rename), so a test polling for DIR/NAME never reads half of it. Shared
 * by the guests that report to their test through files. */
#ifndef PUT_H
#define PUT_H

#include <stdio.h>
#include <stdlib.h>

static void put(const char *dir, const char *name, const char *text)
{
	char path[4096], tmp[4096];
	snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(tmp, "w");
	if (!f)
		exit(3);
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

#endif
