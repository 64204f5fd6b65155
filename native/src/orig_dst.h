// Taking a redirected connection's original destination from mx_peer_orig: the one rule for the engine's
// transparent listener and the addon export, and the sweep that removes stale entries.
#pragma once
#include <cstdint>

#include "meshext_maps.h"

namespace mx {

enum class OrigTake { kFound, kMissing, kStale };

// Lookup-and-delete of `key` (one syscall, so two takers never both win). An entry older than
// MX_ORIG_MAX_AGE_MS is kStale: it belongs to a connection nobody took, not to this one.
OrigTake TakeOriginalDst(int mapFd, const mx_peer_key& key, mx_orig* out);

// Deletes every entry older than MX_ORIG_MAX_AGE_MS; returns how many went.
uint32_t SweepOriginalDst(int mapFd);

}  // namespace mx
