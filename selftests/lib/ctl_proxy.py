#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A control-socket proxy for tests: passes every request to the real
railnetd socket, except one op, which it answers with an error.

    ctl_proxy.py LISTEN_PATH AGENT_PATH FAILED_OP
"""
import json
import os
import socket
import sys
import threading


def serve(conn, upstream, failed_op):
    with conn:
        reader = conn.makefile("rb")
        for line in reader:
            if json.loads(line).get("op") == failed_op:
                conn.sendall(json.dumps({"version": 1, "ok": False,
                                         "error": {"code": "internal",
                                                   "message": "injected by ctl_proxy"}}).encode() + b"\n")
                continue
            with socket.socket(socket.AF_UNIX) as up:
                up.connect(upstream)
                up.sendall(line)
                conn.sendall(up.makefile("rb").readline())


def main():
    listen, upstream, failed_op = sys.argv[1:4]
    if os.path.exists(listen):
        os.unlink(listen)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(listen)
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, upstream, failed_op), daemon=True).start()


main()
