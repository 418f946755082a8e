/* ring_consume.c — drain a barfast sample ring file and print count, drops and mean latency.
 * The contract it follows is docs/ring-format.md (this file is the snippet printed there; a test
 * keeps the two identical).  Build: cc -O2 -o ring_consume ring_consume.c
 * Run:   ./ring_consume /dev/shm/RING   (returns when the producer marks itself done) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {                          /* docs/ring-format.md, "Record" */
    uint64_t intended_ns, send_ns, first_byte_ns, done_ns, seq;
    uint32_t bytes_rx, bytes_tx, conn_id;
    uint16_t endpoint, status;
    uint8_t error, flags;
    uint16_t sys_errno;
    uint32_t connect_us;
} bf_sample_t;
_Static_assert(sizeof(bf_sample_t) == 64, "record is 64 bytes");

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s RING_FILE\n", argv[0]); return 2; }
    int fd = open(argv[1], O_RDWR);
    struct stat st;
    uint8_t h[32];
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096 || pread(fd, h, 32, 0) != 32) {
        fprintf(stderr, "%s: not a ring file\n", argv[1]); return 1;
    }
    uint32_t version, record_size; uint64_t cap, data_offset;
    memcpy(&version, h + 8, 4); memcpy(&record_size, h + 12, 4);   /* little-endian host */
    memcpy(&cap, h + 16, 8); memcpy(&data_offset, h + 24, 8);
    if (memcmp(h, "BARFRING", 8) || version != 1 || record_size != 64 || data_offset != 4096
        || cap == 0 || (cap & (cap - 1)) || cap > (1ull << 40)
        || (uint64_t)st.st_size < 4096 + cap * 64) {
        fprintf(stderr, "%s: unsupported or truncated ring\n", argv[1]); return 1;
    }
    uint8_t *base = mmap(NULL, 4096 + cap * 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    int32_t *done = (int32_t *)(base + 48);
    uint64_t *prod_pos = (uint64_t *)(base + 128), *cons_pos = (uint64_t *)(base + 256);
    uint64_t *dropped = (uint64_t *)(base + 384);
    const bf_sample_t *slot = (const bf_sample_t *)(base + 4096);

    uint64_t cons = __atomic_load_n(cons_pos, __ATOMIC_RELAXED), n = 0;
    double sum_ns = 0;
    for (;;) {
        int fin = __atomic_load_n(done, __ATOMIC_ACQUIRE);            /* before prod_pos */
        uint64_t prod = __atomic_load_n(prod_pos, __ATOMIC_ACQUIRE);  /* records < prod are complete */
        if (prod - cons > cap) { fprintf(stderr, "corrupt ring\n"); return 1; }
        for (; cons != prod; cons++, n++) {
            const bf_sample_t *s = &slot[cons & (cap - 1)];
            sum_ns += (double)(s->done_ns - s->intended_ns);
        }
        __atomic_store_n(cons_pos, cons, __ATOMIC_RELEASE);           /* slots may be reused */
        if (fin) break;
        usleep(1000);                                                 /* a batch per millisecond */
    }
    printf("records %llu dropped %llu mean_latency_ns %.1f\n", (unsigned long long)n,
           (unsigned long long)__atomic_load_n(dropped, __ATOMIC_RELAXED), n ? sum_ns / n : 0.0);
    return 0;
}
