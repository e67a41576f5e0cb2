/*
 * auth.c: STUB authentication: allows everything.
 *
 * TODO(auth): replace with bearer tokens checked against the store's
 * credentials (see auth.h for the contract); then make api_auth_is_stub()
 * return 0.
 */
#include "api/auth.h"

#include <stdio.h>

#include "api/http.h"
#include "common/err.h"

int
api_authenticate(struct api_request *req, enum api_role required)
{
	struct api_principal *who;

	if (req == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	who = api_request_principal(req);
	who->role = required;
	/* Not a token id: says in the audit log that nobody was checked. */
	snprintf(who->actor, sizeof(who->actor), "%s", "unauthenticated");
	return 0;
}

int
api_auth_is_stub(void)
{
	return 1;
}
