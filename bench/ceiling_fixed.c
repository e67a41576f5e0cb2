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

/* The shape and length of an apns-token answer: a 190-character ES256
 * token (header {"alg":"ES256","kid":...}, claims {"iss":...,"iat":...})
 * and its fields. */
static const char fixed_body[] =
    "{\"token\":\"eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyMzQ1NjcifQ."
    "eyJpc3MiOiJERUYxMjM0NTY3IiwiaWF0IjoxNzk1NDc1MzM4fQ."
    "MEUCIQDxbGw7Qyq0M2sV9gQ0nU1Z0vB7aL6yqf1pJf0nJ6w4jQIgFj2mS1k8QY"
    "cX3RzR0x0yC2qB7KxH7Gd9bX4qv0o9lA4\",\"key_id\":\"ABC1234567\","
    "\"team_id\":\"DEF1234567\",\"issued_at\":1795475338,"
    "\"expires_at\":1795478938}";

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
