/* test_err.c: the error vocabulary is complete and stable. */
#include "common/err.h"
#include "tests/check.h"

struct err_case {
	int code;
	const char *name;
};

/* Names clients match on; changing one is an API break. */
static const struct err_case cases[] = {
	{ P8V_ERR_INTERNAL, "internal_error" },
	{ P8V_ERR_INTEGRITY, "integrity_error" },
	{ P8V_ERR_P8_WRONG_CURVE, "p8_wrong_curve" },
	{ P8V_ERR_P8_PUBKEY_MISMATCH, "p8_public_key_mismatch" },
	{ P8V_ERR_KEY_EXISTS, "key_exists" },
	{ P8V_ERR_KEY_IDENTITY_CONFLICT, "key_identity_conflict" },
	{ P8V_ERR_NO_SPACE, "insufficient_storage" },
	{ P8V_ERR_STORE_UNAVAILABLE, "store_unavailable" },
	{ 0, "ok" },
	{ -9999, "internal_error" },
};

#define X_UNIQUE(sym, val, nm, msg) { (val), (nm) },
static const struct err_case all[] = { P8V_ERRORS(X_UNIQUE) };
#undef X_UNIQUE

int
main(void)
{
	size_t i, j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_STR(p8v_errname(cases[i].code), cases[i].name);
	/* Every code and every name is unique, every message non-empty. */
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		CHECKF(all[i].code < 0, "%s", all[i].name);
		CHECKF(*p8v_strerror(all[i].code) != '\0', "%s", all[i].name);
		for (j = i + 1; j < sizeof(all) / sizeof(all[0]); j++) {
			CHECKF(all[i].code != all[j].code, "%s/%s",
			    all[i].name, all[j].name);
			CHECKF(strcmp(all[i].name, all[j].name) != 0, "%s",
			    all[i].name);
		}
	}
	return check_finish();
}
