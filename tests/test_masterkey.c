/*
 * test_masterkey.c: key ids and check values (known answers), key files
 * (formats, modes, file types), generated files, systemd credentials, the
 * keyring.
 */
#include "crypto/masterkey.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/testutil.h"

/*
 * Known answers for the key 00 01 02 ... 1f, computed independently with
 * Python's hashlib/hmac:
 *   sha256(b"p8vault master key id v1" + key).hexdigest()[:16]
 *   hmac.new(key, b"p8vault master key check v1", sha256).hexdigest()
 */
#define KAT_ID_HEX "9518fba0b6e894c0"
#define KAT_CHECK_HEX \
	"4c0f16b2d5a9574bd811cbc31f64b1a3ee9f43f499e61d8f130ac7ce760aba8a"
#define KAT_KEY_HEX \
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define ZERO16 "0000000000000000"
#define KAT_KEY_HEX_UPPER \
	"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

static char *tmp;
static uint8_t kat_key[MASTER_KEY_BYTES];

static char *
path_in_tmp(const char *name)
{
	char *p;

	REQUIRE(asprintf(&p, "%s/%s", tmp, name) > 0);
	return p;
}

/* Write a file with exactly this mode (tu_write_file's is cut by umask). */
static void
write_key_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	unlink(path);
	REQUIRE(tu_write_file(path, buf, len, 0600) == 0);
	REQUIRE(chmod(path, mode) == 0);
}

static void
test_known_answer(void)
{
	struct master_key *mk = NULL;
	uint8_t *want_check = NULL, *want_id = NULL;
	size_t n;

	REQUIRE(tu_hex_decode(KAT_CHECK_HEX, &want_check, &n) == 0);
	REQUIRE(tu_hex_decode(KAT_ID_HEX, &want_id, &n) == 0);
	CHECK_OK(master_key_create(kat_key, sizeof(kat_key), &mk));
	REQUIRE(mk != NULL);
	CHECK_STR(master_key_id_hex(mk), KAT_ID_HEX);
	CHECK_MEM(master_key_id(mk), want_id, MASTER_KEY_ID_BYTES);
	CHECK_MEM(master_key_check(mk), want_check, MASTER_KEY_CHECK_BYTES);
	CHECK_MEM(master_key_bytes(mk), kat_key, MASTER_KEY_BYTES);
	master_key_destroy(mk);
	master_key_destroy(NULL); /* NULL-safe */

	mk = (struct master_key *)1;
	CHECK_ERR(master_key_create(kat_key, 31, &mk), P8V_ERR_INVALID_ARGUMENT);
	CHECK(mk == NULL);
	CHECK_ERR(master_key_create(kat_key, 33, &mk), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(master_key_create(NULL, 32, &mk), P8V_ERR_INVALID_ARGUMENT);
	free(want_check);
	free(want_id);
}

/* Good files: every accepted form gives the known key. */
static void
test_load_good(void)
{
	static const struct {
		const char *name;
		const char *text; /* NULL: the 32 raw bytes */
		mode_t mode;
	} cases[] = {
		{ "raw", NULL, 0600 },
		{ "raw-0400", NULL, 0400 },
		{ "hex", KAT_KEY_HEX, 0600 },
		{ "hex-newline", KAT_KEY_HEX "\n", 0600 },
		{ "hex-upper", KAT_KEY_HEX_UPPER "\n", 0600 },
		{ "hex-crlf", KAT_KEY_HEX "\r\n", 0600 },
		{ "hex-spaces", "  \n\t" KAT_KEY_HEX " \n\n ", 0400 },
		{ "hex-owner-exec", KAT_KEY_HEX "\n", 0700 },
	};
	struct master_key *mk;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = path_in_tmp(cases[i].name);

		if (cases[i].text == NULL)
			write_key_file(path, kat_key, sizeof(kat_key),
			    cases[i].mode);
		else
			write_key_file(path, cases[i].text,
			    strlen(cases[i].text), cases[i].mode);
		mk = NULL;
		CHECK_OK(master_key_load_file(path, &mk));
		CHECKF(mk != NULL && strcmp(master_key_id_hex(mk),
		    KAT_ID_HEX) == 0, "%s", cases[i].name);
		if (mk != NULL)
			CHECKF(memcmp(master_key_bytes(mk), kat_key, 32) == 0,
			    "%s", cases[i].name);
		master_key_destroy(mk);
		free(path);
	}
}

/* Bad files: each refused with its exact code, and *out left NULL. */
static void
test_load_bad(void)
{
	static const uint8_t zeros[32];
	static const struct {
		const char *name;
		const char *text;
		size_t len;     /* 0: strlen(text) */
		mode_t mode;
		int want;
	} cases[] = {
		{ "mode-0640", KAT_KEY_HEX, 0, 0640, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0604", KAT_KEY_HEX, 0, 0604, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0660", KAT_KEY_HEX, 0, 0660, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0644", KAT_KEY_HEX, 0, 0644, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0620", KAT_KEY_HEX, 0, 0620, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0602", KAT_KEY_HEX, 0, 0602, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0610", KAT_KEY_HEX, 0, 0610, P8V_ERR_MASTER_KEY_FILE },
		{ "mode-0601", KAT_KEY_HEX, 0, 0601, P8V_ERR_MASTER_KEY_FILE },
		{ "empty", "", 0, 0600, P8V_ERR_MASTER_KEY_FILE },
		{ "raw-31", "0123456789abcdef0123456789abcde", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "raw-33", "0123456789abcdef0123456789abcdef0", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "hex-62", &(KAT_KEY_HEX "\n")[2], 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "hex-63", &KAT_KEY_HEX[1], 0, 0600, P8V_ERR_MASTER_KEY_FILE },
		{ "hex-65", KAT_KEY_HEX "0", 0, 0600, P8V_ERR_MASTER_KEY_FILE },
		{ "hex-66", KAT_KEY_HEX "00\n", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "non-hex-g", "g00102030405060708090a0b0c0d0e0f"
		    "101112131415161718191a1b1c1d1e1f", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "non-hex-last", "000102030405060708090a0b0c0d0e0f"
		    "101112131415161718191a1b1c1d1e1z\n", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "hex-inner-space", "00010203040506070809 0a0b0c0d0e0f"
		    "101112131415161718191a1b1c1d1e1f", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "hex-0x", "0x" KAT_KEY_HEX, 0, 0600, P8V_ERR_MASTER_KEY_FILE },
		{ "two-keys", KAT_KEY_HEX "\n" KAT_KEY_HEX "\n", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "raw-newline", "0123456789abcdef0123456789abcdef\n", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "raw-zero", (const char *)zeros, 32, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
		{ "hex-zero", ZERO16 ZERO16 ZERO16 ZERO16 "\n", 0, 0600,
		    P8V_ERR_MASTER_KEY_FILE },
	};
	struct master_key *mk;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = path_in_tmp(cases[i].name);
		size_t len = cases[i].len ? cases[i].len :
		    strlen(cases[i].text);

		write_key_file(path, cases[i].text, len, cases[i].mode);
		mk = (struct master_key *)1;
		CHECK_ERR(master_key_load_file(path, &mk), cases[i].want);
		CHECKF(mk == NULL, "%s", cases[i].name);
		free(path);
	}
}

/* Only regular files: no symlink, directory, FIFO, device, too-long file. */
static void
test_load_file_types(void)
{
	struct master_key *mk = NULL;
	char *good = path_in_tmp("target"), *link = path_in_tmp("link");
	char *dir = path_in_tmp("dir"), *fifo = path_in_tmp("fifo");
	char *big = path_in_tmp("big"), *missing = path_in_tmp("missing");
	char text[300];

	write_key_file(good, KAT_KEY_HEX "\n", 65, 0600);
	CHECK_OK(master_key_load_file(good, &mk));
	master_key_destroy(mk);

	REQUIRE(symlink(good, link) == 0);
	CHECK_ERR(master_key_load_file(link, &mk), P8V_ERR_MASTER_KEY_FILE);
	REQUIRE(mkdir(dir, 0700) == 0);
	CHECK_ERR(master_key_load_file(dir, &mk), P8V_ERR_MASTER_KEY_FILE);
	/* Would block for ever without O_NONBLOCK. */
	REQUIRE(mkfifo(fifo, 0600) == 0);
	CHECK_ERR(master_key_load_file(fifo, &mk), P8V_ERR_MASTER_KEY_FILE);
	CHECK_ERR(master_key_load_file("/dev/null", &mk),
	    P8V_ERR_MASTER_KEY_FILE);
	CHECK_ERR(master_key_load_file(missing, &mk), P8V_ERR_NOT_FOUND);
	/* The key with more than 256 bytes of white space around it. */
	memset(text, ' ', sizeof(text));
	memcpy(text + 200, KAT_KEY_HEX, 64);
	write_key_file(big, text, sizeof(text), 0600);
	CHECK_ERR(master_key_load_file(big, &mk), P8V_ERR_MASTER_KEY_FILE);
	write_key_file(big, text + 100, 200, 0600); /* 200 bytes is fine */
	CHECK_OK(master_key_load_file(big, &mk));
	master_key_destroy(mk);
	CHECK_ERR(master_key_load_file(NULL, &mk), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(master_key_load_file(good, NULL), P8V_ERR_INVALID_ARGUMENT);
	free(good);
	free(link);
	free(dir);
	free(fifo);
	free(big);
	free(missing);
}

/*
 * The owner: this process's user or root, nobody else (whoever owns the
 * file can change it). Giving a file away needs root: as another user only
 * the file of one's own is checked.
 */
static void
test_load_file_owner(void)
{
	struct master_key *mk = NULL;
	char *path = path_in_tmp("owned");

	write_key_file(path, KAT_KEY_HEX "\n", 65, 0600);
	CHECK_OK(master_key_load_file(path, &mk));
	master_key_destroy(mk);
	mk = NULL;
	if (geteuid() == 0) {
		/* nobody's, then a daemon user's (not ours, not root). */
		REQUIRE(chown(path, 65534, 65534) == 0);
		CHECK_ERR(master_key_load_file(path, &mk),
		    P8V_ERR_MASTER_KEY_FILE);
		CHECK(mk == NULL);
		REQUIRE(chown(path, 1000, 0) == 0);
		CHECK_ERR(master_key_load_file(path, &mk),
		    P8V_ERR_MASTER_KEY_FILE);
		/* root's, with another group: fine. */
		REQUIRE(chown(path, 0, 65534) == 0);
		CHECK_OK(master_key_load_file(path, &mk));
		master_key_destroy(mk);
	} else {
		fprintf(stderr, "test_load_file_owner: not root: a file owned "
		    "by another user cannot be made\n");
	}
	free(path);
}

static int
is_lower_hex_line(const uint8_t *b, size_t len)
{
	size_t i;

	if (len != 65 || b[64] != '\n')
		return 0;
	for (i = 0; i < 64; i++)
		if (!((b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'f')))
			return 0;
	return 1;
}

static void
test_generate(void)
{
	struct master_key *mk = NULL, *mk2 = NULL;
	char *path = path_in_tmp("generated"), *path2 = path_in_tmp("gen2");
	char *dangling = path_in_tmp("dangling");
	char *nodir = path_in_tmp("no-such-dir/key");
	uint8_t *before = NULL, *after = NULL;
	size_t before_len = 0, after_len = 0;
	struct stat st;
	mode_t old;

	CHECK_OK(master_key_generate_file(path));
	REQUIRE(stat(path, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK(S_ISREG(st.st_mode));
	REQUIRE(tu_read_file(path, &before, &before_len) == 0);
	CHECKF(is_lower_hex_line(before, before_len), "%zu bytes", before_len);
	CHECK_OK(master_key_load_file(path, &mk));

	/* Never overwrites, and leaves the file as it was. */
	CHECK_ERR(master_key_generate_file(path), P8V_ERR_EXISTS);
	REQUIRE(tu_read_file(path, &after, &after_len) == 0);
	CHECK(after_len == before_len && memcmp(before, after, after_len) == 0);

	/* Not through a symlink either, even a dangling one. */
	REQUIRE(symlink(path2, dangling) == 0);
	CHECK_ERR(master_key_generate_file(dangling), P8V_ERR_EXISTS);
	CHECK(access(path2, F_OK) != 0 && errno == ENOENT);

	/* Exactly 0600 whatever the umask. */
	old = umask(0777);
	CHECK_OK(master_key_generate_file(path2));
	umask(old);
	REQUIRE(stat(path2, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_OK(master_key_load_file(path2, &mk2));
	/* Two keys, two ids. */
	if (mk != NULL && mk2 != NULL)
		CHECK(strcmp(master_key_id_hex(mk), master_key_id_hex(mk2)) != 0);

	CHECK_ERR(master_key_generate_file(nodir), P8V_ERR_IO);
	CHECK_ERR(master_key_generate_file(NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(master_key_generate_file(""), P8V_ERR_INVALID_ARGUMENT);

	master_key_destroy(mk);
	master_key_destroy(mk2);
	free(before);
	free(after);
	free(path);
	free(path2);
	free(dangling);
	free(nodir);
}

static void
test_credential(void)
{
	struct master_key *mk = NULL;
	char *dir = path_in_tmp("creds"), *file;

	REQUIRE(mkdir(dir, 0700) == 0);
	REQUIRE(asprintf(&file, "%s/%s", dir, MASTER_KEY_CREDENTIAL) > 0);

	unsetenv("CREDENTIALS_DIRECTORY");
	CHECK_ERR(master_key_load_credential(&mk), P8V_ERR_NOT_FOUND);
	setenv("CREDENTIALS_DIRECTORY", "", 1);
	CHECK_ERR(master_key_load_credential(&mk), P8V_ERR_NOT_FOUND);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	CHECK_ERR(master_key_load_credential(&mk), P8V_ERR_NOT_FOUND);
	write_key_file(file, KAT_KEY_HEX "\n", 65, 0400);
	CHECK_OK(master_key_load_credential(&mk));
	CHECK(mk != NULL && strcmp(master_key_id_hex(mk), KAT_ID_HEX) == 0);
	master_key_destroy(mk);
	write_key_file(file, KAT_KEY_HEX "\n", 65, 0440);
	CHECK_ERR(master_key_load_credential(&mk), P8V_ERR_MASTER_KEY_FILE);
	CHECK(mk == NULL);
	unsetenv("CREDENTIALS_DIRECTORY");
	free(file);
	free(dir);
}

/*
 * Locked memory of this process in kB (VmLck), or -1. Every guarded block
 * is mlock'd, and ASan cannot see guarded blocks (they are mmap'd, not
 * malloc'd), so an unchanged VmLck is how a test shows that no guarded
 * block was leaked.
 */
#ifdef __SANITIZE_ADDRESS__
/* ASan's mlock interceptor does nothing, so VmLck cannot see blocks. */
#define LOCKED_KB_WORKS 0
#else
#define LOCKED_KB_WORKS 1
#endif

static long
locked_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* A key whose 32 bytes are all `b`. */
static struct master_key *
key_of(uint8_t b)
{
	uint8_t raw[MASTER_KEY_BYTES];
	struct master_key *mk = NULL;

	memset(raw, b, sizeof(raw));
	REQUIRE(master_key_create(raw, sizeof(raw), &mk) == 0);
	return mk;
}

static void
test_keyring(void)
{
	struct master_keyring *ring = NULL;
	const struct master_key *k;
	uint8_t id1[MASTER_KEY_ID_BYTES], id2[MASTER_KEY_ID_BYTES];
	uint8_t unknown[MASTER_KEY_ID_BYTES];
	struct master_key *mk;
	long locked_before = locked_kb(), locked_after;
	size_t i;

	REQUIRE(master_keyring_create(&ring) == 0);
	CHECK_INT(master_keyring_count(ring), 0);
	CHECK(master_keyring_primary(ring) == NULL);
	CHECK(master_keyring_get(ring, 0) == NULL);

	mk = key_of(1);
	memcpy(id1, master_key_id(mk), sizeof(id1));
	CHECK_OK(master_keyring_add(ring, mk));
	CHECK(master_keyring_primary(ring) == mk);
	/* VmLck sees a held key, so the balance at the end means something. */
	if (LOCKED_KB_WORKS)
		CHECK(locked_before >= 0 && locked_kb() > locked_before);
	mk = key_of(2);
	memcpy(id2, master_key_id(mk), sizeof(id2));
	CHECK_OK(master_keyring_add(ring, mk));
	CHECK_INT(master_keyring_count(ring), 2);
	/* The most recently added is primary. */
	CHECK(master_keyring_primary(ring) == mk);

	/* A duplicate (same bytes, new object) is dropped: count and primary
	 * stay (the dropped key is destroyed: see VmLck below). */
	CHECK_OK(master_keyring_add(ring, key_of(1)));
	CHECK_INT(master_keyring_count(ring), 2);
	k = master_keyring_primary(ring);
	CHECK(k != NULL && memcmp(master_key_id(k), id2, sizeof(id2)) == 0);

	k = master_keyring_find(ring, id1);
	CHECK(k != NULL && memcmp(master_key_id(k), id1, sizeof(id1)) == 0);
	CHECK(k == master_keyring_get(ring, 0));
	memset(unknown, 0x77, sizeof(unknown));
	CHECK(master_keyring_find(ring, unknown) == NULL);

	/* An explicit primary holds when more keys are added. */
	CHECK_OK(master_keyring_set_primary(ring, id1));
	CHECK(master_keyring_primary(ring) == master_keyring_find(ring, id1));
	CHECK_OK(master_keyring_add(ring, key_of(3)));
	CHECK(master_keyring_primary(ring) == master_keyring_find(ring, id1));
	CHECK_ERR(master_keyring_set_primary(ring, unknown), P8V_ERR_NOT_FOUND);
	CHECK(master_keyring_primary(ring) == master_keyring_find(ring, id1));

	/* Full at MASTER_KEYRING_MAX; the refused key is destroyed too. */
	for (i = master_keyring_count(ring); i < MASTER_KEYRING_MAX; i++)
		CHECK_OK(master_keyring_add(ring, key_of((uint8_t)(10 + i))));
	CHECK_INT(master_keyring_count(ring), MASTER_KEYRING_MAX);
	CHECK_ERR(master_keyring_add(ring, key_of(99)), P8V_ERR_TOO_LARGE);
	CHECK_INT(master_keyring_count(ring), MASTER_KEYRING_MAX);
	/* A duplicate is still fine on a full ring. */
	CHECK_OK(master_keyring_add(ring, key_of(2)));
	for (i = 0; i < MASTER_KEYRING_MAX; i++)
		CHECKF(master_keyring_get(ring, i) != NULL, "key %zu", i);
	CHECK(master_keyring_get(ring, MASTER_KEYRING_MAX) == NULL);

	CHECK_ERR(master_keyring_add(ring, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(master_keyring_add(NULL, key_of(5)),
	    P8V_ERR_INVALID_ARGUMENT);
	master_keyring_destroy(ring);
	master_keyring_destroy(NULL);

	/* Every key the ring was given, kept, dropped or refused, is gone. */
	locked_after = locked_kb();
	if (LOCKED_KB_WORKS)
		CHECK_INT(locked_after, locked_before);
	else
		printf("note: ASan build, guarded-block balance not checked\n");
}

int
main(void)
{
	size_t i;

	REQUIRE(secmem_init() == 0);
	for (i = 0; i < sizeof(kat_key); i++)
		kat_key[i] = (uint8_t)i;
	REQUIRE((tmp = tu_mkdtemp("p8v-masterkey")) != NULL);
	test_known_answer();
	test_load_good();
	test_load_bad();
	test_load_file_types();
	test_load_file_owner();
	test_generate();
	test_credential();
	test_keyring();
	tu_rmtree(tmp);
	free(tmp);
	return check_finish();
}
