/* codec.h: moved to common/codec.h (the record codec, common/keyrecord,
 * uses it without the store); this name stays for the store's files. */
#ifndef P8V_STORE_CODEC_H
#define P8V_STORE_CODEC_H
#include "common/codec.h"
#endif /* P8V_STORE_CODEC_H */
