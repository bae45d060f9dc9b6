#ifndef C_LIBPQ_SHIM_H
#define C_LIBPQ_SHIM_H

// PostgreSQL's client library, libpq (Debian's libpq-dev), for webhook-forwarder only: the handler never links it.
// Only the public API of <libpq-fe.h>; all pointer work on it stays in WebhookForwarding/Postgres.swift.
#include <libpq-fe.h>

#endif
