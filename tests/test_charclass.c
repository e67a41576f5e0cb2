/*
 * test_charclass.c: every entry of charclass_table against the definition
 * of each class (common/charclass.h), written here as range checks.
 */
#include <stddef.h>

#include "common/charclass.h"
#include "tests/check.h"

static int
in_range(int c, int lo, int hi)
{
	return c >= lo && c <= hi;
}

static int
want_hex_lower(int c)
{
	return in_range(c, '0', '9') || in_range(c, 'a', 'f');
}

static int
want_b64url(int c)
{
	return in_range(c, 'A', 'Z') || in_range(c, 'a', 'z') ||
	    in_range(c, '0', '9') || c == '-' || c == '_';
}

static int
want_upper_alnum(int c)
{
	return in_range(c, 'A', 'Z') || in_range(c, '0', '9');
}

static int
want_name(int c)
{
	return in_range(c, 'A', 'Z') || in_range(c, 'a', 'z') ||
	    in_range(c, '0', '9') || c == '.' || c == '_' || c == '-';
}

static int
want_json_plain(int c)
{
	return in_range(c, 0x20, 0x7e) && c != '"' && c != '\\';
}

static const struct {
	unsigned int cls;
	const char *name;
	int (*want)(int c);
	int members;                    /* how many bytes are in it */
} classes[] = {
	{ CC_HEX_LOWER, "CC_HEX_LOWER", want_hex_lower, 16 },
	{ CC_B64URL, "CC_B64URL", want_b64url, 64 },
	{ CC_UPPER_ALNUM, "CC_UPPER_ALNUM", want_upper_alnum, 36 },
	{ CC_NAME, "CC_NAME", want_name, 65 },
	{ CC_JSON_PLAIN, "CC_JSON_PLAIN", want_json_plain, 93 },
};

static void
test_table(void)
{
	unsigned int all = 0;
	size_t i;
	int c, n;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		/* One bit per class. */
		CHECKF((classes[i].cls & all) == 0 &&
		    (classes[i].cls & (classes[i].cls - 1)) == 0,
		    "%s", classes[i].name);
		all |= classes[i].cls;
		for (c = 0, n = 0; c < 256; c++) {
			CHECKF(cc_is((unsigned char)c, classes[i].cls) ==
			    classes[i].want(c), "%s: byte 0x%02x",
			    classes[i].name, c);
			n += cc_is((unsigned char)c, classes[i].cls);
		}
		CHECKF(n == classes[i].members, "%s: %d members",
		    classes[i].name, n);
	}
	/* No bit outside the classes. */
	for (c = 0; c < 256; c++)
		CHECKF((charclass_table[c] & ~all) == 0, "byte 0x%02x", c);
}

int
main(void)
{
	test_table();
	return check_finish();
}
