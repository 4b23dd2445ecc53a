/* SPDX-License-Identifier: Apache-2.0 */
/* MAC addresses as text. */
#ifndef RAILNET_MAC_H
#define RAILNET_MAC_H

/* The @n bytes of "aa:bb:..." (exactly that: @n two-digit hex bytes, colon
 * separated) into @out; -EINVAL for anything else.  @n: 2 or 6. */
int mac_parse(const char *s, unsigned char *out, int n);
/* @mac as "aa:bb:cc:dd:ee:ff". */
void mac_format(const unsigned char mac[6], char out[18]);

#endif
