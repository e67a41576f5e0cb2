/* aead.c: placeholder until implemented. */
#include "crypto/aead.h"
