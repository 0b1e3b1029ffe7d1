/*
 * floor: the least a ptrace+seccomp supervisor can cost, for comparing
 * isotrace against (benches/floor.sh; README "The floor of a ptrace stop
 * per call").
 *
 * usage: floor [-w] [-l] cont|read|poke|rewrite -- CMD [ARGS...]
 *        floor --table     (the trap table, for floor.sh's check against
 *                           arch/src/table_x86_64.rs)
 *
 * The child installs a seccomp filter that returns SECCOMP_RET_TRACE for
 * exactly the calls `isotrace --env` traps (the rows below, copied from
 * arch/src/table_x86_64.rs, in Mode::ReadOnlyHost, root's default; with -w
 * Mode::Isolated, the host writable), including the argument checks; with
 * -l getdents64 is left untrapped, as isotrace's lazy listings leave it
 * while a group has changed nothing and opened no directory of its env
 * (README "Lazy listings"; find does neither, tar traps it after its first
 * create but makes no listing). This
 * process follows every thread and process (waitpid(-1, __WALL)) and at each
 * seccomp stop does, by mode:
 *   cont     nothing: the bare round trip of one stop;
 *   read     PTRACE_GET_SYSCALL_INFO, then pread(2) of each path argument
 *            from /proc/TID/mem, up to its NUL (256 bytes first, then a page
 *            at a time, at most 4096); for calls that name a file by fd
 *            (getdents, getdents64, fchdir; with -w also fchmod & co.),
 *            readlink(2) of /proc/TID/fd/N: the least isolation must do,
 *            know the path;
 *   poke     read, then one PTRACE_POKEUSER of each path's argument
 *            register: a rewrite without the memory write;
 *   rewrite  read, then pwrite(2) of each path's bytes into tracee memory
 *            and the PTRACE_POKEUSER: the least a TOCTOU-safe rewrite costs.
 * The rewrite writes the bytes back where they are (the same address, the
 * same register value): that memory is always mapped and the program sees no
 * change, while a write into a region of its own would cost the same pwrite
 * once the page is there (isotrace's scratch region, tracer/src/scratch.rs).
 * It is not TOCTOU-safe itself: a sibling thread may change the buffer
 * between the read and the kernel's copy; the workloads measured here have
 * one thread per process. A path in a read-only private mapping is made a
 * private copy by the first write (FOLL_FORCE), which only adds to the floor.
 * Nothing is resolved, translated or looked up, and there are no exit stops.
 *
 * At exit it prints the counts to stderr (`floor: stops=N ...`) and exits
 * with the child's status (128+N for a signal).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

/* How arch/src/syscall.rs's Trap spells each row's class. */
enum trap { TRACE, ISO, HOSTW, NONNULL_OR_HOSTW, NONNULL_ISO, ADDR, DENY };
static const char *const trap_name[] = {
	"Trace", "TraceWhenIsolated", "TraceWhenHostWritable", "TraceIfNonNullOrHostWritable",
	"TraceIfNonNullWhenIsolated", "TraceIfAddrBelowScratch", "Deny",
};
struct row {
	int nr;
	const char *name;
	enum trap trap;
	int arg;   /* the argument checked, or the errno of DENY */
	int paths; /* bit i: argument i is a Path */
};
#define P0 1
#define P1 2
#define P2 4
#define P3 8
#define P4 16
#define R(nr, name, trap, arg, paths) { nr, #name, trap, arg, paths }
/* Every row of arch/src/table_x86_64.rs that is not Allow (floor.sh checks). */
static const struct row table[] = {
	R(2, open, TRACE, 0, P0), R(4, stat, TRACE, 0, P0), R(6, lstat, TRACE, 0, P0),
	R(9, mmap, ADDR, 0, 0), R(10, mprotect, ADDR, 0, 0), R(11, munmap, ADDR, 0, 0),
	R(21, access, TRACE, 0, P0), R(25, mremap, TRACE, 0, 0), R(28, madvise, ADDR, 0, 0),
	R(30, shmat, ADDR, 1, 0), R(42, connect, TRACE, 0, 0), R(44, sendto, NONNULL_ISO, 4, 0),
	R(49, bind, TRACE, 0, 0), R(51, getsockname, TRACE, 0, 0), R(52, getpeername, TRACE, 0, 0),
	R(59, execve, TRACE, 0, P0), R(67, shmdt, ADDR, 0, 0), R(76, truncate, TRACE, 0, P0),
	R(78, getdents, TRACE, 0, 0), R(79, getcwd, TRACE, 0, 0), R(80, chdir, TRACE, 0, P0),
	R(81, fchdir, TRACE, 0, 0), R(82, rename, TRACE, 0, P0|P1), R(83, mkdir, TRACE, 0, P0),
	R(84, rmdir, TRACE, 0, P0), R(85, creat, TRACE, 0, P0), R(86, link, TRACE, 0, P0|P1),
	R(87, unlink, TRACE, 0, P0), R(88, symlink, TRACE, 0, P1), R(89, readlink, TRACE, 0, P0),
	R(90, chmod, TRACE, 0, P0), R(91, fchmod, HOSTW, 0, 0), R(92, chown, TRACE, 0, P0),
	R(93, fchown, HOSTW, 0, 0), R(94, lchown, TRACE, 0, P0), R(101, ptrace, TRACE, 0, 0),
	R(105, setuid, ISO, 0, 0), R(106, setgid, ISO, 0, 0), R(113, setreuid, ISO, 0, 0),
	R(114, setregid, ISO, 0, 0), R(116, setgroups, ISO, 0, 0), R(117, setresuid, ISO, 0, 0),
	R(119, setresgid, ISO, 0, 0), R(122, setfsuid, ISO, 0, 0), R(123, setfsgid, ISO, 0, 0),
	R(126, capset, ISO, 0, 0), R(132, utime, TRACE, 0, P0), R(133, mknod, TRACE, 0, P0),
	R(134, uselib, DENY, ENOSYS, P0), R(137, statfs, TRACE, 0, P0), R(155, pivot_root, TRACE, 0, P0|P1),
	R(156, _sysctl, DENY, ENOSYS, 0), R(161, chroot, TRACE, 0, P0), R(163, acct, TRACE, 0, P0),
	R(165, mount, TRACE, 0, P0|P1), R(166, umount2, TRACE, 0, P0), R(167, swapon, TRACE, 0, P0),
	R(168, swapoff, TRACE, 0, P0), R(174, create_module, DENY, ENOSYS, 0), R(177, get_kernel_syms, DENY, ENOSYS, 0),
	R(178, query_module, DENY, ENOSYS, 0), R(179, quotactl, TRACE, 0, P1), R(180, nfsservctl, DENY, ENOSYS, 0),
	R(181, getpmsg, DENY, ENOSYS, 0), R(182, putpmsg, DENY, ENOSYS, 0), R(183, afs_syscall, DENY, ENOSYS, 0),
	R(184, tuxcall, DENY, ENOSYS, 0), R(185, security, DENY, ENOSYS, 0), R(188, setxattr, TRACE, 0, P0),
	R(189, lsetxattr, TRACE, 0, P0), R(190, fsetxattr, HOSTW, 0, 0), R(191, getxattr, TRACE, 0, P0),
	R(192, lgetxattr, TRACE, 0, P0), R(194, listxattr, TRACE, 0, P0), R(195, llistxattr, TRACE, 0, P0),
	R(197, removexattr, TRACE, 0, P0), R(198, lremovexattr, TRACE, 0, P0), R(199, fremovexattr, HOSTW, 0, 0),
	R(203, sched_setaffinity, TRACE, 0, 0), R(204, sched_getaffinity, TRACE, 0, 0), R(205, set_thread_area, DENY, ENOSYS, 0),
	R(211, get_thread_area, DENY, ENOSYS, 0), R(212, lookup_dcookie, DENY, ENOSYS, 0), R(214, epoll_ctl_old, DENY, ENOSYS, 0),
	R(215, epoll_wait_old, DENY, ENOSYS, 0), R(216, remap_file_pages, ADDR, 0, 0), R(217, getdents64, TRACE, 0, 0),
	R(235, utimes, TRACE, 0, P0), R(236, vserver, DENY, ENOSYS, 0), R(254, inotify_add_watch, TRACE, 0, P1),
	R(257, openat, TRACE, 0, P1), R(258, mkdirat, TRACE, 0, P1), R(259, mknodat, TRACE, 0, P1),
	R(260, fchownat, TRACE, 0, P1), R(261, futimesat, TRACE, 0, P1), R(262, newfstatat, TRACE, 0, P1),
	R(263, unlinkat, TRACE, 0, P1), R(264, renameat, TRACE, 0, P1|P3), R(265, linkat, TRACE, 0, P1|P3),
	R(266, symlinkat, TRACE, 0, P2), R(267, readlinkat, TRACE, 0, P1), R(268, fchmodat, TRACE, 0, P1),
	R(269, faccessat, TRACE, 0, P1), R(280, utimensat, NONNULL_OR_HOSTW, 1, P1), R(301, fanotify_mark, TRACE, 0, P4),
	R(303, name_to_handle_at, TRACE, 0, P1), R(304, open_by_handle_at, DENY, EPERM, 0), R(308, setns, ISO, 0, 0),
	R(310, process_vm_readv, TRACE, 0, 0), R(311, process_vm_writev, TRACE, 0, 0), R(316, renameat2, TRACE, 0, P1|P3),
	R(317, seccomp, TRACE, 0, 0), R(322, execveat, TRACE, 0, P1), R(329, pkey_mprotect, ADDR, 0, 0),
	R(332, statx, TRACE, 0, P1), R(425, io_uring_setup, DENY, ENOSYS, 0), R(426, io_uring_enter, DENY, ENOSYS, 0),
	R(427, io_uring_register, DENY, ENOSYS, 0), R(428, open_tree, TRACE, 0, P1), R(429, move_mount, TRACE, 0, P1|P3),
	R(430, fsopen, TRACE, 0, 0), R(431, fsconfig, TRACE, 0, 0), R(432, fsmount, TRACE, 0, 0),
	R(433, fspick, TRACE, 0, P1), R(434, pidfd_open, TRACE, 0, 0), R(437, openat2, TRACE, 0, P1),
	R(438, pidfd_getfd, TRACE, 0, 0), R(439, faccessat2, TRACE, 0, P1), R(440, process_madvise, TRACE, 0, 0),
	R(442, mount_setattr, TRACE, 0, P1), R(452, fchmodat2, TRACE, 0, P1), R(453, map_shadow_stack, ADDR, 0, 0),
	R(462, mseal, ADDR, 0, 0), R(463, setxattrat, TRACE, 0, P1), R(464, getxattrat, TRACE, 0, P1),
	R(465, listxattrat, TRACE, 0, P1), R(466, removexattrat, TRACE, 0, P1), R(467, open_tree_attr, TRACE, 0, P1),
	R(468, file_getattr, TRACE, 0, P1), R(469, file_setattr, TRACE, 0, P1),
};

#define NTABLE (sizeof table / sizeof table[0])
#define NR_END 470          /* the first number past the table (Linux 6.18) */
#define SCRATCH_END 0x210000 /* tracer/src/scratch.rs: 0x10000 + 256 slots of 8 KiB */
#define ALLOW (DENY + 1)     /* an effective class: not trapped */

static const struct row *by_nr[NR_END];
static int hostw;                /* -w: Mode::Isolated instead of ReadOnlyHost */
static int lazy;                 /* -l: getdents64 untrapped (lazy listings) */
static int do_read, do_poke, do_write; /* the mode */
static int *memfd, pid_max;      /* memfd[tid]: the /proc/TID/mem fd + 1, or 0 */
static unsigned long stops, paths, links, writes, pokes, relative, errors;

/* Syscall::effective_trap for the two isolated modes. */
static int effective(const struct row *r)
{
	if (lazy && r->nr == SYS_getdents64)
		return ALLOW;
	switch (r->trap) {
	case ISO: return TRACE;
	case HOSTW: return hostw ? TRACE : ALLOW;
	case NONNULL_OR_HOSTW: return hostw ? TRACE : NONNULL_ISO;
	default: return r->trap;
	}
}

/* ---------------------------------------------------------------- filter */

static struct sock_filter prog[BPF_MAXINSNS];
static unsigned short plen;

static void emit(unsigned short code, unsigned k, unsigned char jt, unsigned char jf)
{
	if (plen == BPF_MAXINSNS) {
		fputs("floor: filter too long\n", stderr);
		exit(125);
	}
	prog[plen++] = (struct sock_filter){ code, jt, jf, k };
}
#define LD(off) emit(BPF_LD | BPF_W | BPF_ABS, (off), 0, 0)
#define JEQ(k, jt, jf) emit(BPF_JMP | BPF_JEQ | BPF_K, (k), (jt), (jf))
#define JGE(k, jt, jf) emit(BPF_JMP | BPF_JGE | BPF_K, (k), (jt), (jf))
#define RET(k) emit(BPF_RET | BPF_K, (k), 0, 0)
#define ARG_LO(i) (unsigned)(offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (ARG_LO(i) + 4)

/* One row's test: "if nr == N: verdict", the same leaves as
 * tracer/src/filter.rs's leaf_code. */
static void emit_row(const struct row *r, int t)
{
	int a = r->arg;
	switch (t) {
	case TRACE:
	case DENY:
		JEQ(r->nr, 0, 1);
		RET(t == TRACE ? SECCOMP_RET_TRACE : SECCOMP_RET_ERRNO | (unsigned)a);
		break;
	case NONNULL_ISO: /* traced iff the argument is not NULL */
		JEQ(r->nr, 0, 6);
		LD(ARG_LO(a)), JEQ(0, 0, 2), LD(ARG_HI(a)), JEQ(0, 1, 0);
		RET(SECCOMP_RET_TRACE), RET(SECCOMP_RET_ALLOW);
		break;
	case ADDR: /* traced iff the address is below SCRATCH_END ... */
		if (r->nr != SYS_mmap) {
			JEQ(r->nr, 0, 6);
			LD(ARG_HI(a)), JEQ(0, 0, 3), LD(ARG_LO(a)), JGE(SCRATCH_END, 1, 0);
		} else { /* ... except mmap's address 0 without MAP_FIXED, a hint */
			JEQ(r->nr, 0, 9);
			LD(ARG_HI(a)), JEQ(0, 0, 6), LD(ARG_LO(a)), JEQ(0, 0, 2);
			LD(ARG_LO(3)), emit(BPF_JMP | BPF_JSET | BPF_K, MAP_FIXED, 1, 2);
			JGE(SCRATCH_END, 1, 0);
		}
		RET(SECCOMP_RET_TRACE), RET(SECCOMP_RET_ALLOW);
		break;
	}
}

/* The filter is a list of tests, not isotrace's balanced tree: the calls
 * that test an argument come first (mmap & co. run it on every call), then
 * the hot path calls, then the rest. An allowed call never loads an
 * argument, so the kernel's action cache skips the filter for it. */
static void build_filter(void)
{
	static const int hot[] = { SYS_openat, SYS_newfstatat, SYS_getdents64, SYS_statx,
				   SYS_unlinkat, SYS_mkdirat, SYS_fchownat, SYS_fchmodat,
				   SYS_faccessat2, SYS_readlinkat, SYS_execve, SYS_fchdir };
	LD(offsetof(struct seccomp_data, arch));
	JEQ(AUDIT_ARCH_X86_64, 1, 0), RET(SECCOMP_RET_ERRNO | ENOSYS); /* i386, as isotrace */
	LD(offsetof(struct seccomp_data, nr));
	JGE(NR_END, 0, 1), RET(SECCOMP_RET_ERRNO | ENOSYS); /* x32 too */
	JGE(424, 2, 0), JGE(337, 0, 1), RET(SECCOMP_RET_ERRNO | ENOSYS); /* the gap */
	for (int pass = 0; pass < 3; pass++) {
		for (size_t i = 0; i < NTABLE; i++) {
			const struct row *r = &table[i];
			int t = effective(r), rank = 2;
			if (t == ALLOW)
				continue;
			if (t == ADDR || t == NONNULL_ISO)
				rank = 0;
			for (size_t h = 0; rank == 2 && h < sizeof hot / sizeof hot[0]; h++)
				rank = r->nr == hot[h] ? 1 : 2;
			if (rank == pass)
				emit_row(r, t);
		}
	}
	RET(SECCOMP_RET_ALLOW);
}

/* ---------------------------------------------------------------- a stop */

/* The tracee's memory, one fd per thread, opened on its first stop. An fd of
 * /proc/PID/mem holds the mm it was opened on, so exec drops it. */
static int mem_of(pid_t tid)
{
	char p[32];
	if (tid >= pid_max)
		return -1;
	if (!memfd[tid]) {
		snprintf(p, sizeof p, "/proc/%d/mem", tid);
		int fd = open(p, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return -1;
		memfd[tid] = fd + 1;
	}
	return memfd[tid] - 1;
}

static void forget(pid_t tid)
{
	if (tid > 0 && tid < pid_max && memfd[tid]) {
		close(memfd[tid] - 1);
		memfd[tid] = 0;
	}
}

/* A NUL-terminated string at addr, to its NUL: its length with the NUL, or
 * -1. pread of /proc/PID/mem stops at the first unmapped byte, so it reads
 * up to the end of a page at a time; the first read takes at most 256 bytes
 * (most paths are short, and copying a page costs more), as isotrace's
 * tracer/src/remote.rs does. */
static ssize_t read_path(int fd, uint64_t addr, char *buf, size_t size)
{
	size_t got = 0;
	while (got < size) {
		size_t chunk = 4096 - ((addr + got) & 4095);
		if (chunk > size - got)
			chunk = size - got;
		if (!got && chunk > 256)
			chunk = 256;
		ssize_t n = pread(fd, buf + got, chunk, (off_t)(addr + got));
		if (n <= 0)
			return -1;
		char *nul = memchr(buf + got, 0, (size_t)n);
		if (nul)
			return nul - buf + 1;
		got += (size_t)n;
	}
	return -1; /* longer than PATH_MAX: the kernel says ENAMETOOLONG */
}

static void read_fd_link(pid_t tid, uint64_t fd)
{
	char p[64], buf[PATH_MAX];
	snprintf(p, sizeof p, "/proc/%d/fd/%d", tid, (int)fd);
	if (readlink(p, buf, sizeof buf) < 0)
		errors++;
	else
		links++;
}

static const size_t arg_reg[6] = {
	offsetof(struct user_regs_struct, rdi), offsetof(struct user_regs_struct, rsi),
	offsetof(struct user_regs_struct, rdx), offsetof(struct user_regs_struct, r10),
	offsetof(struct user_regs_struct, r8), offsetof(struct user_regs_struct, r9),
};

static void on_seccomp(pid_t tid)
{
	struct __ptrace_syscall_info info;
	char buf[PATH_MAX];
	if (ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof info, &info) <= 0 ||
	    info.op != PTRACE_SYSCALL_INFO_SECCOMP) {
		errors++;
		return;
	}
	const struct row *r = info.seccomp.nr < NR_END ? by_nr[info.seccomp.nr] : NULL;
	if (!r)
		return;
	/* Calls that name a file by fd: isolation needs the fd's path. */
	if (r->nr == SYS_getdents || r->nr == SYS_getdents64 || r->nr == SYS_fchdir ||
	    r->trap == HOSTW || (r->trap == NONNULL_OR_HOSTW && !info.seccomp.args[r->arg]))
		read_fd_link(tid, info.seccomp.args[0]);
	int fd = r->paths ? mem_of(tid) : -1;
	for (int i = 0; i < 6; i++) {
		uint64_t addr = info.seccomp.args[i];
		if (!(r->paths & 1 << i) || !addr)
			continue;
		ssize_t n = read_path(fd, addr, buf, sizeof buf);
		if (n < 0) {
			errors++;
			continue;
		}
		paths++;
		relative += buf[0] != '/';
		if (do_write)
			pwrite(fd, buf, (size_t)n, (off_t)addr) == n ? writes++ : errors++;
		if (do_poke)
			ptrace(PTRACE_POKEUSER, tid, arg_reg[i], addr) == 0 ? pokes++ : errors++;
	}
}

/* ---------------------------------------------------------------- main */

static void print_table(void)
{
	for (size_t i = 0; i < NTABLE; i++) {
		const struct row *r = &table[i];
		char p[16] = "-";
		for (int a = 0, n = 0; a < 6; a++)
			if (r->paths & 1 << a)
				n += snprintf(p + n, sizeof p - (size_t)n, "%s%d", n ? "," : "", a);
		printf("%d %s %s", r->nr, r->name, trap_name[r->trap]);
		if (r->trap == DENY)
			printf("(libc::%s)", r->arg == ENOSYS ? "ENOSYS" : "EPERM");
		else if (r->trap >= NONNULL_OR_HOSTW)
			printf("(%d)", r->arg);
		printf(" %s\n", p);
	}
}

static int usage(void)
{
	fputs("usage: floor [-w] [-l] cont|read|poke|rewrite -- CMD [ARGS...]\n"
	      "       floor --table\n", stderr);
	return 125;
}

static void child(char **cmd)
{
	struct sock_fprog fprog = { plen, prog };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog)) {
		perror("floor: installing the seccomp filter");
		_exit(125);
	}
	raise(SIGSTOP); /* until the parent has seized this process */
	execvp(cmd[0], cmd);
	fprintf(stderr, "floor: %s: %s\n", cmd[0], strerror(errno));
	_exit(127);
}

int main(int argc, char **argv)
{
	int a = 1, status, exit_status = 125;
	if (argc == 2 && !strcmp(argv[1], "--table"))
		return print_table(), 0;
	for (; a < argc && (!strcmp(argv[a], "-w") || !strcmp(argv[a], "-l")); a++)
		*(argv[a][1] == 'w' ? &hostw : &lazy) = 1;
	if (argc - a < 3 || strcmp(argv[a + 1], "--"))
		return usage();
	if (!strcmp(argv[a], "read") || !strcmp(argv[a], "poke") || !strcmp(argv[a], "rewrite"))
		do_read = 1, do_poke = strcmp(argv[a], "read") != 0, do_write = !strcmp(argv[a], "rewrite");
	else if (strcmp(argv[a], "cont"))
		return usage();
	for (size_t i = 0; i < NTABLE; i++)
		by_nr[table[i].nr] = &table[i];
	build_filter();
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	if (!f || fscanf(f, "%d", &pid_max) != 1 || !(memfd = calloc((size_t)pid_max, sizeof *memfd))) {
		perror("floor: /proc/sys/kernel/pid_max");
		return 125;
	}
	fclose(f);

	pid_t pid = fork();
	if (pid < 0)
		return perror("floor: fork"), 125;
	if (pid == 0)
		child(argv + a + 2);
	if (waitpid(pid, &status, WSTOPPED) != pid || !WIFSTOPPED(status)) {
		fputs("floor: the child did not stop before exec\n", stderr);
		return 125;
	}
	long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
		    PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
	if (ptrace(PTRACE_SEIZE, pid, 0, opts) < 0) {
		perror("floor: PTRACE_SEIZE");
		kill(pid, SIGKILL);
		return 125;
	}
	kill(pid, SIGCONT);

	/* Until no tracee is left (ECHILD). ESRCH from a ptrace request means the
	 * tracee was killed meanwhile; its exit is reported next. */
	for (;;) {
		pid_t tid = waitpid(-1, &status, __WALL);
		if (tid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			forget(tid);
			if (tid == pid)
				exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			continue;
		}
		int sig = WSTOPSIG(status), event = status >> 16, inject = 0;
		if (sig == SIGTRAP && event == PTRACE_EVENT_SECCOMP) {
			stops++;
			if (do_read)
				on_seccomp(tid);
		} else if (sig == SIGTRAP && event == PTRACE_EVENT_EXEC) {
			unsigned long former = 0;
			ptrace(PTRACE_GETEVENTMSG, tid, 0, &former);
			forget(tid);
			forget((pid_t)former);
		} else if (event == 0) {
			inject = sig; /* a signal-delivery-stop: deliver it */
		}
		/* Anything else (fork/clone events, a new tracee's first stop, a
		 * group-stop, PTRACE_EVENT_STOP) is resumed as it is. */
		ptrace(PTRACE_CONT, tid, 0, inject);
	}
	fprintf(stderr, "floor: stops=%lu paths=%lu relative=%lu links=%lu writes=%lu pokes=%lu errors=%lu\n",
		stops, paths, relative, links, writes, pokes, errors);
	return exit_status;
}
