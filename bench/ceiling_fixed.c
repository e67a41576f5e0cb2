/*
 * ceiling_fixed.c: the fixed-body ceiling. A bare libmicrohttpd server
 * (bench/ceiling.c: p8vaultd's threading and response headers) answering
 * every request with the same JSON body, as long as a p8vault apns-token
 * answer: what HTTP alone costs on this machine. Cached apns-token
 * requests are measured against it.
 *
 *   ceiling_fixed [--port P] [--threads N] [--pool]
 */
#include <stdio.h>
#include <string.h>

#include "bench/ceiling.h"

/* An apns-token answer as p8vaultd writes it (288 bytes): the token
 * (header {"alg":"ES256","kid":...}, claims {"iss":...,"iat":...}) and its
 * fields. */
static const char fixed_body[] =
    "{\"token\":\"eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMzQ1NjcifQ."
    "eyJpc3MiOiJERUYxMjM0NTY3IiwiaWF0IjoxNzk1NDc2ODkzfQ.dmFfChHCK"
    "S3JoY0Jhkane2WJh9JdnNvjM2Z_B7qjnt5th8r1z4CiDFwskiZdO3o4HiMkL"
    "NL7WjrhXq-xos5wiQ\",\"key_id\":\"ABC1234567\",\"team_id\":\""
    "DEF1234567\",\"issued_at\":1795476893,\"expires_at\":1795480"
    "493}";

static size_t
body(char *out, size_t out_size)
{
	if (sizeof(fixed_body) > out_size)
		return 0;
	memcpy(out, fixed_body, sizeof(fixed_body));
	return sizeof(fixed_body) - 1;
}

int
main(int argc, char **argv)
{
	return ceiling_main(argc, argv, body, NULL);
}
