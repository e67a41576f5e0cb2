/* envelope.c: placeholder until implemented. */
#include "crypto/envelope.h"
