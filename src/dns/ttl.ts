/** TTL of the answers the resolver gives for owned names, in seconds (Kuma's value). */
export const DNS_TTL_SECONDS = 30;
