/*
 * routes.h: the daemon's route table.
 *
 * Adding an endpoint is one line in api_routes[] (routes.c) and one handler
 * function (declared in its module's header, e.g. api/health.h), see
 * api/router.h for the fields and api/http.h for what a handler gets.
 */
#ifndef P8V_API_ROUTES_H
#define P8V_API_ROUTES_H

#include <stddef.h>

#include "api/router.h"

extern const struct api_route api_routes[];
extern const size_t api_routes_count;

#endif /* P8V_API_ROUTES_H */
