/* ids.c: identifier validation; see ids.h. */
#include "common/ids.h"

#include <string.h>

#include "common/charclass.h"
#include "common/err.h"

/* Plain ASCII classes (common/charclass.h): isalnum() would follow the
 * locale. */

int
ids_name_ok(const char *s, size_t max)
{
	size_t i;

	if (s == NULL || *s == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		if (i >= max || !cc_is((unsigned char)s[i], CC_NAME))
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
		if (!cc_is((unsigned char)s[i], CC_UPPER_ALNUM))
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
