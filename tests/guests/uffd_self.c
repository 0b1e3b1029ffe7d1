// A program that serves its own userfaultfd: the main thread opens a path
// that sits in a page registered missing; the handler thread, woken by the
// fault, first makes a path syscall of its own (stat), then fills the page.
// If no fault comes within 3 s (the open failed without touching the page)
// it fills the page anyway. Prints whether the fault came, then how the
// open ended. Exit 2: no userfaultfd here.
//
// `uffd_self user`: the userfaultfd is UFFD_USER_MODE_ONLY, so the kernel's
// own copy of the path is not served: the open fails with EFAULT at once,
// no fault is reported, the handler gives up waiting after 0.3 s.
// `uffd_self unmapped`: no userfaultfd; the path pointer is in a page just
// unmapped (EFAULT).
// `uffd_self connect SOCKET`: the argument in the missing page is a struct
// sockaddr_un naming SOCKET, where the program listens; prints how
// connect(2) ended instead of open(2).

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static int uffd;
static char *area;
static long page;
static int faulted;
static int wait_ms = 3000;
/* What the handler fills the page with. */
static char fill[sizeof(struct sockaddr_un)];

static void *handler(void *arg) {
	(void)arg;
	struct pollfd p = {.fd = uffd, .events = POLLIN};
	int got = poll(&p, 1, wait_ms);
	struct uffd_msg msg;
	if (got == 1 && read(uffd, &msg, sizeof msg) == sizeof msg && msg.event == UFFD_EVENT_PAGEFAULT) faulted = 1;
	struct stat st;
	stat("/etc/hostname", &st); // a trapped call before serving
	char *src = aligned_alloc(page, page);
	memset(src, 0, page);
	memcpy(src, fill, sizeof fill);
	struct uffdio_copy c = {.dst = (unsigned long)area, .src = (unsigned long)src, .len = page};
	if (ioctl(uffd, UFFDIO_COPY, &c) != 0) { perror("UFFDIO_COPY"); exit(7); }
	return NULL;
}

int main(int argc, char **argv) {
	page = sysconf(_SC_PAGESIZE);
	const char *mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "unmapped") == 0) {
		char *gone = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		strcpy(gone, "/etc/hostname");
		munmap(gone, page);
		int fd = open(gone, O_RDONLY);
		printf("open %s\n", fd >= 0 ? "ok" : strerror(errno));
		return 0;
	}
	int listener = -1;
	strcpy(fill, "/etc/hostname");
	if (strcmp(mode, "connect") == 0 && argc > 2) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s", argv[2]);
		listener = socket(AF_UNIX, SOCK_STREAM, 0);
		unlink(argv[2]);
		if (bind(listener, (struct sockaddr *)&sun, sizeof sun) || listen(listener, 1)) {
			perror("bind");
			return 3;
		}
		memcpy(fill, &sun, sizeof sun);
	}
	int flags = O_CLOEXEC | O_NONBLOCK;
	if (strcmp(mode, "user") == 0) {
		flags |= UFFD_USER_MODE_ONLY;
		wait_ms = 300;
	}
	uffd = syscall(SYS_userfaultfd, flags);
	if (uffd < 0) { perror("userfaultfd"); return 2; }
	struct uffdio_api api = {.api = UFFD_API};
	if (ioctl(uffd, UFFDIO_API, &api)) { perror("UFFDIO_API"); return 2; }
	area = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_register r = {.range = {.start = (unsigned long)area, .len = page}, .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("UFFDIO_REGISTER"); return 2; }
	pthread_t t;
	pthread_create(&t, NULL, handler, NULL);
	int fd, err;
	const char *what = "open";
	if (listener >= 0) {
		what = "connect";
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		fd = connect(fd, (struct sockaddr *)area, sizeof(struct sockaddr_un)) == 0 ? fd : -1;
	} else {
		fd = open(area, O_RDONLY);
	}
	err = errno;
	pthread_join(t, NULL);
	printf("fault %d\n%s %s\n", faulted, what, fd >= 0 ? "ok" : strerror(err));
	if (listener >= 0) unlink(argv[2]);
	return 0;
}
