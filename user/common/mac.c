// SPDX-License-Identifier: Apache-2.0
#include "common/mac.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mac_parse(const char *s, unsigned char *out, int n)
{
	unsigned int b[6];
	int got = n == 6 ? sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5])
			 : sscanf(s, "%2x:%2x", &b[0], &b[1]);

	if (got != n || strlen(s) != (size_t)(3 * n - 1))
		return -EINVAL;
	for (int i = 0; i < n; i++)
		out[i] = (unsigned char)b[i];
	return 0;
}

void mac_format(const unsigned char mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}
