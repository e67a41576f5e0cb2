/* jwt.c: placeholder until implemented. */
#include "crypto/jwt.h"
