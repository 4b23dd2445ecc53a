/* SPDX-License-Identifier: Apache-2.0 */
/* The CNI verbs. */
#ifndef RAILNET_CNI_CMD_H
#define RAILNET_CNI_CMD_H

#include "cni.h"

/* Each returns 0 and may set *out (the JSON to print), or a negative
 * code with @e filled. */
int cmd_add(const struct netconf *nc, const struct cni_env *env, struct json_object **out,
	    struct cni_error *e);
int cmd_del(const struct netconf *nc, const struct cni_env *env, struct cni_error *e);
int cmd_check(const struct netconf *nc, const struct cni_env *env, struct cni_error *e);
int cmd_status(const struct netconf *nc, struct cni_error *e);
int cmd_gc(const struct netconf *nc, struct cni_error *e);

#endif
