/* secmem.c: placeholder until implemented. */
#include "crypto/secmem.h"
