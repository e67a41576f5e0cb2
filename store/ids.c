/* ids.c: identifier validation; see ids.h. */
#include "store/ids.h"

#include <string.h>

#include "common/err.h"

/* Plain ASCII tests: isalnum() would follow the locale. */
static int
is_upper_alnum(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int
is_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int
ids_name_ok(const char *s, size_t max)
{
	size_t i;

	if (s == NULL || *s == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= max || !is_name_char(s[i]))
			return 0;
	}
	return 1;
}

static int
apple_id_ok(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < IDS_APPLE_ID_LEN; i++) {
		if (!is_upper_alnum(s[i]))
			return 0; /* also stops at a NUL: too short */
	}
	return s[IDS_APPLE_ID_LEN] == '\0';
}

int
ids_app_valid(const char *app)
{
	if (!ids_name_ok(app, IDS_APP_MAX))
		return P8V_ERR_BAD_APP_ID;
	/* Path components with a meaning of their own: never an app. */
	if (strcmp(app, ".") == 0 || strcmp(app, "..") == 0)
		return P8V_ERR_BAD_APP_ID;
	return 0;
}

int
ids_key_id_valid(const char *key_id)
{
	return apple_id_ok(key_id) ? 0 : P8V_ERR_BAD_KEY_ID;
}

int
ids_team_id_valid(const char *team_id)
{
	return apple_id_ok(team_id) ? 0 : P8V_ERR_BAD_TEAM_ID;
}
