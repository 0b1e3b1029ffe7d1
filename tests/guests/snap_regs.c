/* Three threads park in read(2) inside distinctly named functions with
 * known values in rbx, r12 and ymm0 (zmm0 where the CPU has AVX-512F),
 * for checking the registers gdb finds in a core against what the
 * program itself set.
 *
 * argv[1]: a directory. Each thread loads its values and issues the read
 * syscall itself (inline asm), so that frame 0 is its named function and
 * the registers at the stop are exactly the ones it loaded: the syscall
 * instruction preserves everything but rax, rcx and r11 (x86-64 psABI,
 * A.2.1), and Linux restores the vector state on the way back.
 *
 * Once every thread is blocked, DIR/regs gets one line per thread:
 *   TID FUNCTION rbx=0x.. r12=0x.. ymm0=0x..,0x..,0x..,0x.. zmm0=0x..,... (or zmm0=none)
 * and then DIR/pid. On DIR/go, the main thread writes one byte to each
 * pipe; each thread checks that rbx and r12 survived the (restarted) read
 * and prints "FUNCTION ok" or "FUNCTION bad"; main prints "done". */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "put.h"

#define RBX_BASE 0x5ca1ab1e00000000ull
#define R12_BASE 0xfeedface00000000ull

static int pipes[3][2];
static volatile int parked;
static int has512;
static char lines[3][512];
static int ok[3];

static void vec_values(int idx, uint64_t v[8])
{
	for (int k = 0; k < 8; k++)
		v[k] = 0x0100000000000000ull * (uint64_t)(idx + 1) + 0x1111ull * (uint64_t)(k + 1);
}

/* Loads the values and blocks in read(fd); returns 1 if rbx and r12 still
 * hold them when the read returns. */
__attribute__((noinline)) static int park(int idx, const char *name)
{
	uint64_t v[8], rbx_out, r12_out;
	uint64_t rbx_in = RBX_BASE + (uint64_t)idx, r12_in = R12_BASE + (uint64_t)idx;
	long ret;
	char c;
	int n;
	vec_values(idx, v);
	n = snprintf(lines[idx], sizeof lines[idx],
		     "%ld %s rbx=%#llx r12=%#llx ymm0=%#llx,%#llx,%#llx,%#llx zmm0=",
		     (long)syscall(SYS_gettid), name, (unsigned long long)rbx_in,
		     (unsigned long long)r12_in, (unsigned long long)v[0],
		     (unsigned long long)v[1], (unsigned long long)v[2],
		     (unsigned long long)v[3]);
	for (int k = 0; k < 8 && has512; k++)
		n += snprintf(lines[idx] + n, sizeof lines[idx] - n, "%s%#llx", k ? "," : "",
			      (unsigned long long)v[k]);
	if (!has512)
		snprintf(lines[idx] + n, sizeof lines[idx] - n, "none");
	__sync_fetch_and_add(&parked, 1);
	__asm__ volatile("test %[w], %[w]\n\t"
			 "jz 1f\n\t"
			 "vmovdqu64 (%[v]), %%zmm0\n\t"
			 "jmp 2f\n"
			 "1:\n\t"
			 "vmovdqu (%[v]), %%ymm0\n"
			 "2:\n\t"
			 "mov %[b], %%rbx\n\t"
			 "mov %[r], %%r12\n\t"
			 "syscall\n\t"
			 "mov %%rbx, %[bo]\n\t"
			 "mov %%r12, %[ro]\n\t"
			 : "=a"(ret), [bo] "=&r"(rbx_out), [ro] "=&r"(r12_out)
			 : "a"((long)SYS_read), "D"((long)pipes[idx][0]), "S"(&c), "d"(1L),
			   [b] "r"(rbx_in), [r] "r"(r12_in), [w] "r"(has512), [v] "r"(v)
			 : "rbx", "r12", "rcx", "r11", "xmm0", "memory");
	return ret == 1 && rbx_out == rbx_in && r12_out == r12_in;
}

__attribute__((noinline)) void parked_in_red(void) { ok[0] = park(0, "parked_in_red"); }
__attribute__((noinline)) void parked_in_green(void) { ok[1] = park(1, "parked_in_green"); }
__attribute__((noinline)) void parked_in_blue(void) { ok[2] = park(2, "parked_in_blue"); }

static void *run(void *arg)
{
	switch ((long)arg) {
	case 0: parked_in_red(); break;
	case 1: parked_in_green(); break;
	default: parked_in_blue(); break;
	}
	__asm__ volatile("" ::: "memory");
	return NULL;
}

int main(int argc, char **argv)
{
	static const char *names[3] = {"parked_in_red", "parked_in_green", "parked_in_blue"};
	char path[4096], text[2048] = "";
	pthread_t th[3];
	if (argc < 2)
		return 2;
	__builtin_cpu_init();
	has512 = __builtin_cpu_supports("avx512f");
	for (long i = 0; i < 3; i++) {
		if (pipe(pipes[i]) != 0)
			return 3;
		pthread_create(&th[i], NULL, run, (void *)i);
	}
	while (parked < 3)
		usleep(1000);
	for (int i = 0; i < 3; i++) {
		strcat(text, lines[i]);
		strcat(text, "\n");
	}
	put(argv[1], "regs", text);
	snprintf(text, sizeof text, "%d\n", getpid());
	put(argv[1], "pid", text);
	snprintf(path, sizeof path, "%s/go", argv[1]);
	while (access(path, F_OK) != 0)
		usleep(2000);
	for (int i = 0; i < 3; i++)
		if (write(pipes[i][1], "x", 1) != 1)
			return 4;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		printf("%s %s\n", names[i], ok[i] ? "ok" : "bad");
	}
	printf("done\n");
	return 0;
}
