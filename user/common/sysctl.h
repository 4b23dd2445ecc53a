/* SPDX-License-Identifier: Apache-2.0 */
/* Sysctls of the calling thread's netns, by their path under /proc/sys. */
#ifndef RAILNET_SYSCTL_H
#define RAILNET_SYSCTL_H

#include <stddef.h>

/* "net/ipv4/conf/net1/rp_filter" = @value; negative errno on failure. */
int sysctl_write(const char *path, const char *value);
/* Its first line into @value (@size bytes). */
int sysctl_read(const char *path, char *value, size_t size);

#endif
