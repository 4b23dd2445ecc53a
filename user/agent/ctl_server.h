/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket: a unix stream socket, mode 0600, peers with uid 0
 * only, served by a pool of workers that accept for themselves
 * (docs/protocol.md). */
#ifndef RAILNET_CTL_SERVER_H
#define RAILNET_CTL_SERVER_H

struct agent;
struct ctl_server;

int ctl_server_start(struct agent *agent, const char *path, struct ctl_server **server);
/* Stops accepting, lets in-flight requests finish (up to @grace_ms), and
 * removes the socket. */
void ctl_server_stop(struct ctl_server *server, int grace_ms);

#endif
