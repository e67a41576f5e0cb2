/* p8.c: placeholder until implemented. */
#include "crypto/p8.h"
