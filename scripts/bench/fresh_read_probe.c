/* What reading a file from the page cache into fresh memory costs on this machine: the floor
 * under a thaw (a state's K/V must land in memory the process has not touched yet), without
 * the checksum, the format or the engine. Two threads, as the thaw uses, each reading half of
 * the file in 1 MiB pieces:
 *   populate      MADV_POPULATE_WRITE only (the page faults and zeroing, nothing read)
 *   read          pread into fresh pages (the copy faults them in, one by one)
 *   populate+read MADV_POPULATE_WRITE, then pread (what the thaw does, less blake3)
 * Each mode runs in a fresh mapping; `hugepages` madvises it MADV_HUGEPAGE first.
 *
 *   cc -O2 -pthread scripts/bench/fresh_read_probe.c -o /tmp/fresh_read_probe
 *   cat FILE > /dev/null; /tmp/fresh_read_probe FILE [hugepages]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define PIECE (1UL << 20)
#define HUGE (2UL << 20)

static int fd, mode;
static char *buf;
static size_t half;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *work(void *arg) {
    size_t first = (size_t)arg * half;
    for (size_t o = 0; o < half; o += PIECE) {
        size_t n = half - o < PIECE ? half - o : PIECE;
        if (mode & 1) madvise(buf + first + o, n, MADV_POPULATE_WRITE);
        if ((mode & 2) && pread(fd, buf + first + o, n, (off_t)(first + o)) != (ssize_t)n) {
            perror("pread");
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [hugepages]\n", argv[0]);
        return 2;
    }
    struct stat st;
    fd = open(argv[1], O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    int huge = argc > 2;
    half = ((size_t)st.st_size / 2) & ~(PIECE - 1);
    const char *names[] = {"", "populate", "read", "populate+read"};
    for (int round = 0; round < 3; round++) {
        for (mode = 1; mode <= 3; mode++) {
            size_t len = 2 * half + HUGE;
            char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (map == MAP_FAILED) {
                perror("mmap");
                return 1;
            }
            buf = (char *)(((unsigned long)map + HUGE - 1) & ~(HUGE - 1));
            if (huge) madvise(buf, 2 * half, MADV_HUGEPAGE);
            double t = now_ms();
            pthread_t th[2];
            for (long i = 0; i < 2; i++) pthread_create(&th[i], NULL, work, (void *)i);
            for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
            double ms = now_ms() - t;
            printf("%-14s %s %zu MB: %7.1f ms (%.2f GB/s)\n", names[mode], huge ? "huge pages" : "4 KiB pages",
                   2 * half / 1000000, ms, 2 * half / ms / 1e6);
            munmap(map, len);
        }
    }
    return 0;
}
