/* masterkey.c: placeholder until implemented. */
#include "crypto/masterkey.h"
