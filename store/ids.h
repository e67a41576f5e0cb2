/* ids.h: moved to common/ids.h (the keeper validates ids too); this name
 * stays for the store's own files. */
#ifndef P8V_STORE_IDS_H
#define P8V_STORE_IDS_H
#include "common/ids.h"
#endif /* P8V_STORE_IDS_H */
