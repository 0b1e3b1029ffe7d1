/* A memfd (fd 10) holding "keymap", sealed against writing (F_SEAL_WRITE,
 * as a Wayland keymap is) and mapped shared read-only. A checkpoint
 * cannot bring its contents back through the mapping and must refuse.
 *
 * argv[1]: a pid file, written (write + rename) once the state is built.
 * argv[2]: a result file: on SIGUSR1 the program writes "intact" if the
 * mapping still reads "keymap" and the seals are as set, then exits. */
#define _GNU_SOURCE
#include "held.h"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	held_init();
	int fd = memfd_create("keymap", MFD_ALLOW_SEALING);
	if (fd < 0 || dup2(fd, 10) != 10 || write(10, "keymap", 7) != 7)
		return 4;
	close(fd);
	int seals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
	if (fcntl(10, F_ADD_SEALS, seals) != 0)
		return 5;
	const char *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, 10, 0);
	if (m == MAP_FAILED)
		return 6;
	held_ready(argv[1]);
	held_wait();
	if (strcmp(m, "keymap") != 0 || fcntl(10, F_GET_SEALS) != seals) {
		held_put(argv[2], "the memfd changed");
		return 1;
	}
	held_put(argv[2], "intact");
	return 0;
}
