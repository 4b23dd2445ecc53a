/* SPDX-License-Identifier: Apache-2.0 */
/* The railnetd control protocol's constants (docs/protocol.md). */
#ifndef RAILNET_PROTOCOL_H
#define RAILNET_PROTOCOL_H

#define CTL_PROTOCOL_VERSION	1
#define CTL_DEFAULT_SOCKET	"/run/railnet/railnetd.sock"
#define CTL_MAX_LINE		(64 * 1024)        /* a request */
#define CTL_MAX_RESPONSE	(64 * 1024 * 1024) /* a response (a node's allocations) */
#define CTL_REQUEST_TIMEOUT_MS	2000
#define CTL_IDLE_TIMEOUT_MS	10000

/* Error codes an agent answers with. */
#define CTL_ERR_BAD_REQUEST	"bad_request"
#define CTL_ERR_VERSION		"unsupported_version"
#define CTL_ERR_TOO_LARGE	"too_large"
#define CTL_ERR_UNKNOWN_OP	"unknown_op"
#define CTL_ERR_BUSY		"busy"
#define CTL_ERR_NOT_FOUND	"not_found"
#define CTL_ERR_EXHAUSTED	"pool_exhausted"
#define CTL_ERR_UNKNOWN_POOL	"unknown_pool"
#define CTL_ERR_NOT_ALLOWED	"pool_not_allowed"
#define CTL_ERR_INTERNAL	"internal"
#define CTL_ERR_DISABLED	"disabled"

#endif
