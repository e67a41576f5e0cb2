/*
 * memscan: search a process's anonymous memory for many byte strings at
 * once (tests/integration/test_keeper_process.py).
 *
 *   memscan PID < NEEDLES
 *
 * NEEDLES: one per line, "name<TAB>hex" (each at least 8 bytes). Reads
 * every anonymous mapping of PID (as test_sign_memory.py's scan does:
 * heap, stacks, guarded pages; no file mappings, no [vvar]/[vsyscall], none
 * over 512 MiB) through /proc/PID/mem, page by page (an unreadable page
 * reads as zeros), and prints "name<TAB>mapping" for each needle found in
 * a mapping. A Python search of a thousand needles in a few hundred MiB
 * takes minutes; this one indexes the needles by their first 8 bytes and
 * looks each offset up once. Exit 0, or 2 on a usage or I/O error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096
#define REGION_MAX ((uint64_t)512 << 20)
#define NEEDLES_MAX 100000
#define SLOTS (1u << 18)        /* a power of two over 2 x NEEDLES_MAX */

struct needle {
	char *name;
	uint8_t *b;
	size_t len;
	uint64_t head;
	int found;              /* in the current mapping */
};

static struct needle needles[NEEDLES_MAX];
static size_t n_needles;
static int32_t slots[SLOTS];    /* needle index + 1, chained by probing */

static uint64_t
head_of(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static size_t
slot_of(uint64_t h)
{
	h ^= h >> 29;
	h *= UINT64_C(0xbf58476d1ce4e5b9);
	h ^= h >> 32;
	return (size_t)h & (SLOTS - 1);
}

static int
read_needles(void)
{
	char line[65536], *tab, *hex;
	size_t i, n;
	unsigned int byte;

	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if ((tab = strchr(line, '\t')) == NULL || n_needles == NEEDLES_MAX)
			return -1;
		*tab = '\0';
		hex = tab + 1;
		n = strlen(hex) / 2;
		if (n < 8 || strlen(hex) % 2 != 0)
			return -1;
		struct needle *nd = &needles[n_needles];
		if ((nd->name = strdup(line)) == NULL ||
		    (nd->b = malloc(n)) == NULL)
			return -1;
		for (i = 0; i < n; i++) {
			if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
				return -1;
			nd->b[i] = (uint8_t)byte;
		}
		nd->len = n;
		nd->head = head_of(nd->b);
		for (i = slot_of(nd->head); slots[i] != 0; i = (i + 1) & (SLOTS - 1))
			;
		slots[i] = (int32_t)n_needles + 1;
		n_needles++;
	}
	return 0;
}

static void
search(const uint8_t *data, size_t len, const char *mapping)
{
	size_t off, i;
	uint64_t h;
	struct needle *nd;

	for (i = 0; i < n_needles; i++)
		needles[i].found = 0;
	for (off = 0; off + 8 <= len; off++) {
		h = head_of(data + off);
		for (i = slot_of(h); slots[i] != 0; i = (i + 1) & (SLOTS - 1)) {
			nd = &needles[slots[i] - 1];
			if (nd->head != h || nd->found || off + nd->len > len ||
			    memcmp(data + off, nd->b, nd->len) != 0)
				continue;
			nd->found = 1;
			printf("%s\t%s\n", nd->name, mapping);
		}
	}
}

int
main(int argc, char **argv)
{
	char path[64], line[1024], name[1024];
	uint64_t lo, hi, a;
	uint8_t *data;
	FILE *maps, *mem;
	int fields;

	if (argc != 2 || read_needles() != 0) {
		fprintf(stderr, "usage: memscan PID < name<TAB>hex lines\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%s/maps", argv[1]);
	if ((maps = fopen(path, "r")) == NULL)
		return 2;
	snprintf(path, sizeof(path), "/proc/%s/mem", argv[1]);
	if ((mem = fopen(path, "rb")) == NULL)
		return 2;
	setvbuf(mem, NULL, _IONBF, 0);
	while (fgets(line, sizeof(line), maps) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		name[0] = '\0';
		fields = sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %1023s",
		    &lo, &hi, name);
		if (fields < 2)
			continue;
		if ((name[0] != '\0' && name[0] != '[') ||
		    strcmp(name, "[vvar]") == 0 ||
		    strcmp(name, "[vvar_vclock]") == 0 ||
		    strcmp(name, "[vsyscall]") == 0 || hi - lo > REGION_MAX)
			continue;
		if ((data = malloc(hi - lo)) == NULL)
			return 2;
		for (a = lo; a < hi; a += PAGE)
			if (fseeko(mem, (off_t)a, SEEK_SET) != 0 ||
			    fread(data + (a - lo), 1, PAGE, mem) != PAGE)
				memset(data + (a - lo), 0, PAGE);
		search(data, hi - lo, line);
		free(data);
	}
	return 0;
}
