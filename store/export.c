/* export.c: logical export and import of a whole store; see export.h. */
#include "store/export.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/err.h"
#include "common/log.h"
#include "store/backup.h"

/* Read and write buffer. */
#define EXPORT_BUF_BYTES (64 * 1024)
#define EXPORT_HEADER_BYTES (STORE_EXPORT_MAGIC_BYTES + 4 + 4)
#define EXPORT_ENTRY_HEAD_BYTES (1 + 2 + 4)
#define META_SCHEMA "schema"

static void
why(struct store_export_info *info, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
why(struct store_export_info *info, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(info->why, sizeof(info->why), fmt, ap);
	va_end(ap);
}

static void
info_reset(struct store_export_info *info)
{
	memset(info, 0, sizeof(*info));
}

/* --- export --- */

struct writer {
	struct store *store;
	int fd;
	uint8_t *buf;
	size_t used;
	uint64_t bytes;
	crypto_hash_sha256_state hash;
	struct store_export_info *info;
};

static int
flush_out(struct writer *w)
{
	size_t off = 0;
	ssize_t n;

	while (off < w->used) {
		n = write(w->fd, w->buf + off, w->used - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_errorf("export_io", "writing the export: %s",
			    strerror(errno));
			return errno == ENOSPC || errno == EDQUOT ?
			    P8V_ERR_NO_SPACE : P8V_ERR_IO;
		}
		off += (size_t)n;
	}
	w->used = 0;
	return 0;
}

/* Append n bytes to the file (hashed unless raw). */
static int
out_bytes(struct writer *w, const void *p, size_t n, int raw)
{
	const uint8_t *b = p;
	size_t k;
	int r;

	if (!raw)
		crypto_hash_sha256_update(&w->hash, b, n);
	w->bytes += n;
	while (n > 0) {
		if (w->used == EXPORT_BUF_BYTES && (r = flush_out(w)) != 0)
			return r;
		k = EXPORT_BUF_BYTES - w->used;
		if (k > n)
			k = n;
		memcpy(w->buf + w->used, b, k);
		w->used += k;
		b += k;
		n -= k;
	}
	return 0;
}

struct export_db {
	struct writer *w;
	uint8_t db;
};

static int
export_entry(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct export_db *e = arg;
	uint8_t head[EXPORT_ENTRY_HEAD_BYTES];
	int r;

	if (klen == 0 || klen > STORE_MAX_KEY_BYTES ||
	    vlen > STORE_EXPORT_MAX_VALUE) {
		log_errorf("export_error", "an entry of database %u is too "
		    "large to export (%zu-byte key, %zu-byte value)",
		    (unsigned)e->db, klen, vlen);
		return P8V_ERR_TOO_LARGE;
	}
	head[0] = e->db;
	head[1] = (uint8_t)(klen >> 8);
	head[2] = (uint8_t)klen;
	store_put_u32(head + 3, (uint32_t)vlen);
	if ((r = out_bytes(e->w, head, sizeof(head), 0)) != 0 ||
	    (r = out_bytes(e->w, key, klen, 0)) != 0 ||
	    (r = out_bytes(e->w, val, vlen, 0)) != 0)
		return r;
	e->w->info->entries[e->db]++;
	e->w->info->total++;
	return 0;
}

/* The read transaction's function: the whole file from its start (so it
 * may run again). */
static int
export_txn(struct store_txn *txn, void *arg)
{
	struct writer *w = arg;
	struct export_db e = { w, 0 };
	uint8_t head[EXPORT_HEADER_BYTES], end[1 + 8];
	int r;

	info_reset(w->info);
	w->used = 0;
	w->bytes = 0;
	if (ftruncate(w->fd, 0) != 0 || lseek(w->fd, 0, SEEK_SET) != 0)
		return P8V_ERR_IO;
	crypto_hash_sha256_init(&w->hash);
	memcpy(head, STORE_EXPORT_MAGIC, STORE_EXPORT_MAGIC_BYTES);
	store_put_u32(head + 8, STORE_EXPORT_VERSION);
	store_put_u32(head + 12, STORE_SCHEMA_VERSION);
	if ((r = out_bytes(w, head, sizeof(head), 0)) != 0)
		return r;
	for (e.db = 0; e.db < STORE_DB_COUNT; e.db++)
		if ((r = store_scan(txn, (enum store_db)e.db, NULL, 0,
		    export_entry, &e)) != 0)
			return r;
	end[0] = STORE_EXPORT_END;
	store_put_u64(end + 1, w->info->total);
	if ((r = out_bytes(w, end, sizeof(end), 0)) != 0)
		return r;
	crypto_hash_sha256_final(&w->hash, w->info->sha256);
	if ((r = out_bytes(w, w->info->sha256, STORE_EXPORT_SHA256_BYTES,
	    1)) != 0)
		return r;
	if ((r = flush_out(w)) != 0)
		return r;
	w->info->bytes = w->bytes;
	return 0;
}

static int
export_fill(int fd, void *arg)
{
	struct writer *w = arg;

	w->fd = fd;
	return store_read(w->store, export_txn, w);
}

int
store_export(struct store *store, const char *path,
    struct store_export_info *info)
{
	struct store_export_info local;
	struct writer w;
	int r;

	if (info == NULL)
		info = &local;
	info_reset(info);
	if (store == NULL || path == NULL || *path == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	memset(&w, 0, sizeof(w));
	w.store = store;
	w.info = info;
	if ((w.buf = malloc(EXPORT_BUF_BYTES)) == NULL)
		return P8V_ERR_ALLOC;
	r = store_file_create(path, export_fill, &w);
	free(w.buf);
	if (r != 0) {
		info_reset(info);
		return r;
	}
	return 0;
}

/* --- reading an export --- */

struct reader {
	int fd;
	uint8_t *buf;
	size_t used, pos;
	int eof;
	uint64_t offset;        /* of the next byte */
	crypto_hash_sha256_state hash;
};

/* Fill the buffer; 0 or P8V_ERR_IO. */
static int
refill(struct reader *rd)
{
	ssize_t n;

	rd->used = rd->pos = 0;
	for (;;) {
		n = read(rd->fd, rd->buf, EXPORT_BUF_BYTES);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_errorf("export_io", "reading the export: %s",
			    strerror(errno));
			return P8V_ERR_IO;
		}
		break;
	}
	rd->used = (size_t)n;
	rd->eof = n == 0;
	return 0;
}

/* Read exactly n bytes into dst (hashed unless raw); *got < n at the end
 * of the file. */
static int
in_bytes(struct reader *rd, void *dst, size_t n, int raw, size_t *got)
{
	uint8_t *d = dst;
	size_t k;
	int r;

	*got = 0;
	while (*got < n) {
		if (rd->pos == rd->used) {
			if ((r = refill(rd)) != 0)
				return r;
			if (rd->eof)
				return 0;
		}
		k = rd->used - rd->pos;
		if (k > n - *got)
			k = n - *got;
		memcpy(d + *got, rd->buf + rd->pos, k);
		if (!raw)
			crypto_hash_sha256_update(&rd->hash, d + *got, k);
		rd->pos += k;
		*got += k;
		rd->offset += k;
	}
	return 0;
}

/* What the parser hands on: one entry (pointers valid until the next). */
typedef int (*entry_fn)(uint8_t db, const uint8_t *key, size_t klen,
    const uint8_t *val, size_t vlen, void *arg);

/* Key order as every backend sorts: bytes, then length. */
static int
key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

#define TRUNCATED(what) do { \
		why(info, "truncated or damaged (the file ends inside %s " \
		    "at byte %" PRIu64 ")", what, rd->offset); \
		r = P8V_ERR_INTEGRITY; \
		goto out; \
	} while (0)

/*
 * Read a whole export from rd, checking everything; call fn (may be NULL)
 * for each entry. info gets counts and checksum, or why.
 */
static int
parse(struct reader *rd, struct store_export_info *info, entry_fn fn,
    void *arg)
{
	uint8_t head[EXPORT_HEADER_BYTES], eh[EXPORT_ENTRY_HEAD_BYTES];
	uint8_t prev_key[STORE_MAX_KEY_BYTES], key[STORE_MAX_KEY_BYTES];
	uint8_t md[STORE_EXPORT_SHA256_BYTES], sum[STORE_EXPORT_SHA256_BYTES];
	uint8_t *val = NULL, extra, count[8];
	size_t got, klen, vlen, prev_len = 0, val_cap = 0;
	int prev_db = -1, r = P8V_ERR_INTEGRITY;
	uint64_t n;
	uint32_t v;

	crypto_hash_sha256_init(&rd->hash);
	if ((r = in_bytes(rd, head, sizeof(head), 0, &got)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (got < STORE_EXPORT_MAGIC_BYTES || memcmp(head, STORE_EXPORT_MAGIC,
	    STORE_EXPORT_MAGIC_BYTES) != 0) {
		why(info, "not a p8vault export file");
		goto out;
	}
	if (got < sizeof(head))
		TRUNCATED("the header");
	if ((v = store_get_u32(head + 8)) != STORE_EXPORT_VERSION) {
		why(info, "export format version %" PRIu32 "; this p8vault "
		    "reads version %d", v, STORE_EXPORT_VERSION);
		r = P8V_ERR_UNSUPPORTED;
		goto out;
	}
	if ((v = store_get_u32(head + 12)) != STORE_SCHEMA_VERSION) {
		why(info, "exported from store schema version %" PRIu32 "; "
		    "this p8vault reads version %d", v, STORE_SCHEMA_VERSION);
		r = P8V_ERR_STORE_VERSION;
		goto out;
	}
	for (;;) {
		if ((r = in_bytes(rd, eh, 1, 0, &got)) != 0)
			goto out;
		r = P8V_ERR_INTEGRITY;
		if (got < 1)
			TRUNCATED("the entries (no end marker)");
		if (eh[0] == STORE_EXPORT_END)
			break;
		if (eh[0] >= STORE_DB_COUNT) {
			why(info, "damaged (unknown database %u at byte "
			    "%" PRIu64 ")", (unsigned)eh[0], rd->offset - 1);
			goto out;
		}
		if ((r = in_bytes(rd, eh + 1, sizeof(eh) - 1, 0, &got)) != 0)
			goto out;
		r = P8V_ERR_INTEGRITY;
		if (got < sizeof(eh) - 1)
			TRUNCATED("an entry");
		klen = (size_t)eh[1] << 8 | eh[2];
		vlen = store_get_u32(eh + 3);
		if (klen == 0 || klen > STORE_MAX_KEY_BYTES ||
		    vlen > STORE_EXPORT_MAX_VALUE) {
			why(info, "damaged (an entry's length is out of range "
			    "at byte %" PRIu64 ")", rd->offset);
			goto out;
		}
		if ((r = in_bytes(rd, key, klen, 0, &got)) != 0)
			goto out;
		r = P8V_ERR_INTEGRITY;
		if (got < klen)
			TRUNCATED("a key");
		if (eh[0] < prev_db || (eh[0] == prev_db &&
		    key_cmp(prev_key, prev_len, key, klen) >= 0)) {
			why(info, "damaged (entries out of order at byte "
			    "%" PRIu64 ")", rd->offset);
			goto out;
		}
		if (vlen > val_cap) {
			free(val);
			val_cap = vlen;
			if ((val = malloc(val_cap)) == NULL) {
				val_cap = 0;
				r = P8V_ERR_ALLOC;
				goto out;
			}
		}
		if ((r = in_bytes(rd, val, vlen, 0, &got)) != 0)
			goto out;
		r = P8V_ERR_INTEGRITY;
		if (got < vlen)
			TRUNCATED("a value");
		if (eh[0] == STORE_DB_META && klen == strlen(META_SCHEMA) &&
		    memcmp(key, META_SCHEMA, klen) == 0 &&
		    (vlen != 4 || store_get_u32(val) != STORE_SCHEMA_VERSION)) {
			why(info, "damaged (its schema entry does not match "
			    "its header)");
			goto out;
		}
		prev_db = eh[0];
		memcpy(prev_key, key, klen);
		prev_len = klen;
		info->entries[eh[0]]++;
		info->total++;
		if (fn != NULL && (r = fn(eh[0], key, klen, val, vlen,
		    arg)) != 0)
			goto out;
	}
	if ((r = in_bytes(rd, count, sizeof(count), 0, &got)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (got < sizeof(count))
		TRUNCATED("the end marker");
	crypto_hash_sha256_final(&rd->hash, md);
	if ((r = in_bytes(rd, sum, sizeof(sum), 1, &got)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (got < sizeof(sum))
		TRUNCATED("the checksum");
	if (sodium_memcmp(md, sum, sizeof(md)) != 0) {
		why(info, "altered or damaged (the SHA-256 checksum does not "
		    "match the content)");
		goto out;
	}
	if ((n = store_get_u64(count)) != info->total) {
		why(info, "damaged (it says %" PRIu64 " entries and holds "
		    "%" PRIu64 ")", n, info->total);
		goto out;
	}
	if ((r = in_bytes(rd, &extra, 1, 1, &got)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (got != 0) {
		why(info, "damaged (data after the checksum at byte "
		    "%" PRIu64 ")", rd->offset - 1);
		goto out;
	}
	memcpy(info->sha256, md, sizeof(md));
	info->bytes = rd->offset;
	r = 0;
 out:
	free(val);
	return r;
}

/* Open path for reading: *fd, or P8V_ERR_NOT_FOUND/IO with why. */
static int
open_export(const char *path, struct store_export_info *info, int *fd)
{
	struct stat st;

	if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		why(info, "cannot open it: %s", strerror(errno));
		return errno == ENOENT ? P8V_ERR_NOT_FOUND : P8V_ERR_IO;
	}
	if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		why(info, "not a regular file");
		close(*fd);
		*fd = -1;
		return P8V_ERR_INVALID_ARGUMENT;
	}
	return 0;
}

/* Parse the file from its start; r as parse. */
static int
read_all(int fd, struct store_export_info *info, entry_fn fn, void *arg)
{
	struct reader rd;
	int r;

	memset(&rd, 0, sizeof(rd));
	rd.fd = fd;
	if (lseek(fd, 0, SEEK_SET) != 0) {
		why(info, "cannot read it: %s", strerror(errno));
		return P8V_ERR_IO;
	}
	if ((rd.buf = malloc(EXPORT_BUF_BYTES)) == NULL)
		return P8V_ERR_ALLOC;
	if ((r = parse(&rd, info, fn, arg)) == P8V_ERR_IO && info->why[0] ==
	    '\0')
		why(info, "cannot read it: %s", strerror(errno));
	free(rd.buf);
	return r;
}

int
store_export_check(const char *path, struct store_export_info *info)
{
	struct store_export_info local;
	int fd = -1, r;

	if (info == NULL)
		info = &local;
	info_reset(info);
	if (path == NULL || *path == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	if ((r = open_export(path, info, &fd)) != 0)
		return r;
	r = read_all(fd, info, NULL, NULL);
	close(fd);
	return r;
}

/* --- import --- */

struct batch_entry {
	uint8_t db;
	size_t koff, klen, voff, vlen;
};

struct batch {
	struct store *store;
	size_t max_ops, max_bytes;
	uint8_t *data;
	size_t used, cap;
	struct batch_entry *e;
	size_t n, cap_e;
};

/* The write transaction's function: puts only, so it may run again. */
static int
put_batch(struct store_txn *txn, void *arg)
{
	struct batch *b = arg;
	struct batch_entry *e;
	size_t i;
	int r;

	for (i = 0; i < b->n; i++) {
		e = &b->e[i];
		if ((r = store_put(txn, (enum store_db)e->db, b->data + e->koff,
		    e->klen, b->data + e->voff, e->vlen,
		    STORE_PUT_NO_OVERWRITE)) != 0)
			return r;
	}
	return 0;
}

static int
flush_batch(struct batch *b)
{
	int r;

	if (b->n == 0)
		return 0;
	r = store_write(b->store, put_batch, b);
	b->n = 0;
	b->used = 0;
	return r;
}

static int
add_entry(uint8_t db, const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct batch *b = arg;
	struct batch_entry *e;
	size_t need = klen + vlen, cap;
	void *p;
	int r;

	/* The new store has its own schema entry, equal to this one (parse
	 * checked): writing it again would be refused. */
	if (db == STORE_DB_META && klen == strlen(META_SCHEMA) &&
	    memcmp(key, META_SCHEMA, klen) == 0)
		return 0;
	if (b->n > 0 && (b->n + 1 > b->max_ops ||
	    b->used + need > b->max_bytes) && (r = flush_batch(b)) != 0)
		return r;
	if (b->used + need > b->cap) {
		cap = b->cap == 0 ? b->max_bytes : b->cap;
		while (cap < b->used + need)
			cap *= 2;
		if ((p = realloc(b->data, cap)) == NULL)
			return P8V_ERR_ALLOC;
		b->data = p;
		b->cap = cap;
	}
	if (b->n == b->cap_e) {
		cap = b->cap_e == 0 ? b->max_ops : b->cap_e * 2;
		if ((p = realloc(b->e, cap * sizeof(*b->e))) == NULL)
			return P8V_ERR_ALLOC;
		b->e = p;
		b->cap_e = cap;
	}
	e = &b->e[b->n++];
	e->db = db;
	e->koff = b->used;
	e->klen = klen;
	memcpy(b->data + b->used, key, klen);
	b->used += klen;
	e->voff = b->used;
	e->vlen = vlen;
	if (vlen > 0)
		memcpy(b->data + b->used, val, vlen);
	b->used += vlen;
	return 0;
}

struct emptiness {
	int empty;
};

/* Empty: nothing in any database but meta's schema entry. */
static int
check_empty(struct store_txn *txn, void *arg)
{
	struct emptiness *em = arg;
	const uint8_t *v;
	uint64_t n;
	size_t vlen;
	int db, r;

	em->empty = 0;
	for (db = 0; db < STORE_DB_COUNT; db++) {
		if ((r = store_count(txn, (enum store_db)db, &n)) != 0)
			return r;
		if (n > (db == STORE_DB_META ? 1u : 0u))
			return 0;
		if (db == STORE_DB_META && n == 1 &&
		    (r = store_get(txn, STORE_DB_META, META_SCHEMA,
		    strlen(META_SCHEMA), &v, &vlen)) != 0)
			return r == P8V_ERR_NOT_FOUND ? 0 : r;
	}
	em->empty = 1;
	return 0;
}

/* Undo a failed import: every database cleared, the schema kept. */
static int
clear_all(struct store_txn *txn, void *arg)
{
	uint8_t ver[4];
	int db, r;

	(void)arg;
	for (db = 0; db < STORE_DB_COUNT; db++)
		if ((r = store_clear(txn, (enum store_db)db)) != 0)
			return r;
	store_put_u32(ver, STORE_SCHEMA_VERSION);
	return store_put(txn, STORE_DB_META, META_SCHEMA, strlen(META_SCHEMA),
	    ver, sizeof(ver), 0);
}

int
store_import(struct store *store, const char *path,
    struct store_export_info *info)
{
	struct store_export_info local, second;
	struct emptiness em = { 0 };
	struct batch b;
	size_t ops, bytes;
	int fd = -1, written = 0, r;

	if (info == NULL)
		info = &local;
	info_reset(info);
	memset(&b, 0, sizeof(b));
	if (store == NULL || path == NULL || *path == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	if ((r = store_read(store, check_empty, &em)) != 0)
		goto out;
	if (!em.empty) {
		why(info, "the target store is not empty; import only into a "
		    "new one");
		r = P8V_ERR_EXISTS;
		goto out;
	}
	if ((r = open_export(path, info, &fd)) != 0)
		goto out;
	/* First reading: the whole file checks out before anything is
	 * written. */
	if ((r = read_all(fd, info, NULL, NULL)) != 0)
		goto out;
	b.store = store;
	b.max_ops = STORE_IMPORT_BATCH_OPS;
	b.max_bytes = STORE_IMPORT_BATCH_BYTES;
	store_limits(store, &ops, &bytes);
	if (ops != 0 && ops < b.max_ops)
		b.max_ops = ops;
	if (bytes != 0 && bytes < b.max_bytes)
		b.max_bytes = bytes;
	/* Second reading: write it. Everything is checked again, and the
	 * checksum must be the first reading's. */
	info_reset(&second);
	written = 1;
	if ((r = read_all(fd, &second, add_entry, &b)) != 0 ||
	    (r = flush_batch(&b)) != 0) {
		if (second.why[0] != '\0')
			memcpy(info->why, second.why, sizeof(info->why));
		goto out;
	}
	if (memcmp(second.sha256, info->sha256, sizeof(info->sha256)) != 0) {
		why(info, "changed while it was being imported");
		r = P8V_ERR_INTEGRITY;
		goto out;
	}
	written = 0;
	r = 0;
 out:
	if (written && store_write(store, clear_all, NULL) != 0)
		log_errorf("import_error", "a failed import left entries in "
		    "the store; remove it");
	if (r != 0 && info->why[0] == '\0')
		why(info, "%s", p8v_strerror(r));
	if (fd >= 0)
		close(fd);
	free(b.data);
	free(b.e);
	return r;
}
