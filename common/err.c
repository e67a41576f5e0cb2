/* err.c: names and messages for the P8V_ERR_* vocabulary. */
#include "common/err.h"

#include <stddef.h>

struct err_entry {
	int code;
	const char *name;
	const char *message;
};

static const struct err_entry err_table[] = {
	{ P8V_OK, "ok", "success" },
#define P8V_ERR_ROW(sym, val, nm, msg) { (val), (nm), (msg) },
	P8V_ERRORS(P8V_ERR_ROW)
#undef P8V_ERR_ROW
};

static const struct err_entry *
lookup(int err)
{
	size_t i;

	for (i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
		if (err_table[i].code == err)
			return &err_table[i];
	return &err_table[1]; /* P8V_ERR_INTERNAL */
}

const char *
p8v_strerror(int err)
{
	return lookup(err)->message;
}

const char *
p8v_errname(int err)
{
	return lookup(err)->name;
}
